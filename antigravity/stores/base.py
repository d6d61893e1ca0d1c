"""The vector-store interface the engine, the CLI and the harness use.

:class:`VectorStore` is a :class:`typing.Protocol`: any class with these members can hold a
collection (``isinstance(obj, VectorStore)`` checks that the members exist; the test
``tests/test_store_protocol.py`` also compares parameter names). Implementations:
:class:`antigravity.stores.qdrant.QdrantStore` (qdrant-client: local mode or a server) and
:class:`antigravity.stores.edge.EdgeStore` (embedded Qdrant Edge shard);
``tests/test_store_congruence.py`` holds them to the same answers.

Each document has one *raw* vector (named :data:`RAW`, the student's embedding, never
transformed) and two *served* vectors (named in :data:`SLOTS`, ``adapter(raw)`` double
buffered). All vectors of a collection are ``d``-dimensional ``float32`` and compared by
cosine (Qdrant stores cosine vectors normalised to unit length, so vectors read back are
unit-length). Document ids are strings; payloads are JSON-like dicts.

Search results are ordered by score descending, then document id ascending (ties are broken
the same way on every backend), and never contain empty documents (payload flag
``_ag_empty``).
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
        n_empty: number of stored empty documents (never returned by :meth:`search`; searches
            fetch this many extra hits, and more when it is too low). The engine raises it
            after an upsert of empty documents and resets it from :meth:`count_empty`, so it
            must be writable; :meth:`delete` recounts it.
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
        """Embedded store in a folder: the file that records its collections (QdrantStore:
        ``<folder>/meta.json``; EdgeStore: the shard's ``<folder>/<collection>/edge_config.json``);
        else ``None``."""
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
            StoreError: ``dim`` is not an integer in 1..65536 (a bool or float is refused), or
                the collection exists with another dimension.
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
        an id replaces that document. The collection must exist (:meth:`ensure_collection`).

        Raises:
            StoreError: the collection does not exist, counts or shapes differ, or a payload is
                not a JSON object (names the document; NaN and inf are not JSON).
            DocumentError: a raw or served vector holds NaN or inf (names the documents).
            TypeError: ``doc_ids`` is a single string.
            Nothing is written when any of these is raised.
        """
        ...

    def set_served(self, doc_ids: Sequence[str], slot: str, vectors: np.ndarray) -> None:
        """Overwrite the ``slot`` vectors (``(n, d) float32``) of stored documents.

        Raises:
            StoreError: ``slot`` is not one of :data:`SLOTS`, the collection does not exist,
                ``vectors`` is not ``(n, d)``, or an id is not stored (names the id).
            DocumentError: a vector holds NaN or inf (names the documents).
            Nothing is written when any of these is raised.
        """
        ...

    def clear_served(self, slot: str) -> None:
        """Remove every ``slot`` vector (a promotion does this before writing the whole slot).

        Raises:
            StoreError: ``slot`` is not one of :data:`SLOTS`.
        """
        ...

    def search(
        self, vectors: np.ndarray, using: str, k: int, filter: Any = None
    ) -> list[list[tuple[str, float, dict]]]:
        """Top-``k`` cosine search of each row of ``vectors`` (``(m, d) float32``) against the
        named vector ``using`` (:data:`RAW` or a slot).

        Args:
            filter: ``None``, the dict form ``{"field": value | [values] | {"gte": .., "lte": ..,
                "gt": .., "lt": ..}}`` (all conditions must hold) or a
                ``qdrant_client.models.Filter``; see :mod:`antigravity.stores.filters`.
                Combined with the exclusion of empty documents.

        Returns:
            ``m`` lists of ``(doc_id, score, payload)`` (score: cosine similarity in [-1, 1];
            payload without ``doc_id``), at most ``k`` each, ordered by score descending then
            doc id ascending, empty documents left out; ``m`` empty lists when the collection
            does not exist.

        Raises:
            QueryError: ``k`` is not an integer >= 0 (a bool, float or string is refused, not
                truncated), a query vector holds NaN or inf (names its row), or the filter is
                malformed (or, on EdgeStore, outside the supported subset). Checked also when
                the collection does not exist.
            StoreError: ``using`` is not a vector name, or ``vectors`` is not ``(m, d)``.
        """
        ...

    def retrieve(self, doc_ids: Sequence[str], with_vectors: bool | Sequence[str] = False) -> dict[str, dict[str, Any]]:
        """The stored documents among ``doc_ids`` (missing ids are absent from the result).

        Returns:
            ``with_vectors=False``: ``{doc_id: payload}``. ``with_vectors=True`` (all three
            names) or a sequence of vector names: ``{doc_id: {"payload": payload, "vectors":
            {name: (d,) float32}}}``, where ``vectors`` holds only the named vectors the
            document has (a slot never written is absent); vectors are unit-length (cosine).

        Raises:
            StoreError: an unknown vector name.
            TypeError: ``doc_ids`` is a single string.
        """
        ...

    def delete(self, doc_ids: Sequence[str]) -> None:
        """Delete the documents ``doc_ids`` (unknown ids are ignored); :attr:`n_empty` is
        recounted, so :meth:`count`, :meth:`count_empty` and :attr:`n_empty` stay exact.

        Raises:
            TypeError: ``doc_ids`` is a single string.
        """
        ...

    def create_payload_index(self, field: str, schema: str) -> None:
        """Index the payload ``field`` for filtering; ``schema`` is one of ``"keyword"``,
        ``"integer"``, ``"float"``, ``"bool"`` (Qdrant's ``PayloadSchemaType``). Qdrant's
        local mode has no payload indexes (filters are evaluated by scanning): a no-op there.

        Raises:
            QueryError: unknown ``schema``, or an empty or reserved (``_ag_``) ``field``.
            StoreError: the collection does not exist yet.
        """
        ...

    def optimize(self) -> None:
        """Build the ANN (HNSW) index over everything written so far, blocking until done.
        EdgeStore has no background optimizer: documents written after the last call are
        searched exactly until the next one. QdrantStore: a no-op (local mode searches
        exactly; a server optimises in the background)."""
        ...

    def indexed_vectors_count(self) -> int:
        """Qdrant's ``indexed_vectors_count``: stored vectors (all named vectors together, so up
        to 3 per document) in HNSW-indexed segments; 0 when nothing is indexed (always in
        Qdrant's local mode) or the collection does not exist."""
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

    def count_vectors(self, name: str) -> int:
        """Number of stored documents that hold vector ``name`` (a served slot, or ``raw``); 0
        when the collection or the slot does not exist. A served slot holds every document's
        vector once materialised; fewer means the slot is stale (e.g. restored from an older
        backup than the raw vectors)."""
        ...

    def close(self) -> None:
        """Release the store (an embedded store's folder lock). Closing twice is harmless."""
        ...
