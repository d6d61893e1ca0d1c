"""The vector-store interface the engine, the CLI and the harness use.

:class:`VectorStore` is a :class:`typing.Protocol`: any class with these members can hold a
collection (``isinstance(obj, VectorStore)`` checks that the members exist; the test
``tests/test_store_protocol.py`` also compares parameter names). Today's implementation is
:class:`antigravity.stores.qdrant.QdrantStore`; a further backend is held to the same interface.

Each document has one *raw* vector (named :data:`RAW`, the student's embedding, never
transformed) and two *served* vectors (named in :data:`SLOTS`, ``adapter(raw)`` double
buffered). All vectors of a collection are ``d``-dimensional ``float32`` and compared by cosine.
Document ids are strings; payloads are JSON-like dicts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

RAW = "raw"
"""Name of the raw vector of each document (written once at ingest)."""

SLOTS = ("served_a", "served_b")
"""Names of the two served-vector slots (``adapter(raw)``; one is searched, the other rebuilt)."""


@runtime_checkable
class VectorStore(Protocol):
    """A collection of documents, each with a :data:`RAW` and two :data:`SLOTS` vectors and a payload.

    Attributes:
        collection: the collection name.
        location: embedded store: ``":memory:"`` or its folder; ``None`` for a server.
        remote: ``True`` when the store is a server (``location`` is then ``None``).
        dim: the collection's vector dimension ``d``; ``None`` while the collection does not
            exist (every read then returns nothing, every count 0).
        n_empty: number of stored empty documents (never returned by :meth:`search`). The
            engine raises it after an upsert of empty documents and resets it from
            :meth:`count_empty`, so it must be writable.
        permission_warnings: warnings about an unsafe store folder found at open (e.g. group- or
            world-writable); empty when there is nothing to report or no folder.
    """

    collection: str
    location: str | None
    remote: bool
    dim: int | None
    n_empty: int
    permission_warnings: list[str]

    @property
    def meta_file(self) -> Path | None:
        """Embedded store in a folder: the file listing its collections; else ``None``."""
        ...

    @property
    def collection_dir(self) -> Path | None:
        """Embedded store in a folder: the folder holding this collection's data; else ``None``."""
        ...

    def describe(self) -> str:
        """Where the collection lives, for messages (credentials masked)."""
        ...

    def ensure_collection(self, dim: int) -> None:
        """Create the collection for ``dim``-dimensional vectors if it does not exist; sets :attr:`dim`.

        Raises:
            StoreError: the collection exists with another dimension.
        """
        ...

    def drop_collection(self) -> None:
        """Delete the collection and every point in it; :attr:`dim` becomes ``None``, :attr:`n_empty` 0."""
        ...

    def upsert(
        self,
        doc_ids: Sequence[str],
        raw: np.ndarray,
        payloads: Sequence[dict[str, Any]],
        served: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Insert or replace ``n`` documents: ``raw`` ``(n, d) float32``, one payload each, and
        optionally ``served`` ``{slot: (n, d) float32}`` for slots of :data:`SLOTS`. Re-upserting
        an id replaces that document. The collection must exist (:meth:`ensure_collection`)."""
        ...

    def set_served(self, doc_ids: Sequence[str], slot: str, vectors: np.ndarray) -> None:
        """Overwrite the ``slot`` vectors (``(n, d) float32``) of stored documents.

        Raises:
            StoreError: ``slot`` is not one of :data:`SLOTS`.
        """
        ...

    def search(self, vectors: np.ndarray, using: str, k: int) -> list[list[tuple[str, float, dict]]]:
        """Top-``k`` cosine search of each row of ``vectors`` (``(m, d) float32``) against the
        named vector ``using`` (:data:`RAW` or a slot). Returns ``m`` lists of
        ``(doc_id, score, payload)``, best first, at most ``k`` each, empty documents left out;
        ``m`` empty lists when the collection does not exist."""
        ...

    def retrieve(self, doc_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """``{doc_id: payload}`` of the stored documents among ``doc_ids`` (missing ones absent)."""
        ...

    def iter_payloads(self, batch_size: int = 1024) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield ``(doc_id, payload)`` for every stored document (nothing when the collection does not exist)."""
        ...

    def iter_vectors(self, names: Sequence[str] = (RAW,), batch_size: int = 1024) -> Iterator[tuple[list[str], dict[str, np.ndarray]]]:
        """Yield batches ``(doc_ids, {name: (b, d) float32})`` over all stored documents, for the
        vector ``names``; a vector a document lacks is a zero row."""
        ...

    def count(self) -> int:
        """Number of stored documents (empty ones included); 0 when the collection does not exist."""
        ...

    def count_empty(self) -> int:
        """Number of stored empty documents; 0 when the collection does not exist."""
        ...

    def close(self) -> None:
        """Release the store (an embedded store's folder lock). Closing twice is harmless."""
        ...
