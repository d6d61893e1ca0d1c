"""Vector store on Qdrant (qdrant-client): embedded local mode or a server, one code path.

Each point carries three named vectors (all cosine, dimension ``d`` of the student):

* ``raw`` — the student's embedding of the document text, written once at ingest and never
  transformed: every adapter is applied to raw vectors, so adapters never compound;
* ``served_a`` / ``served_b`` — two slots for ``adapter(raw)``. A new adapter version is
  materialised into the slot no search is using, then the engine flips one pointer, so a
  search sees exactly one version (double buffering; an untrained adapter is the identity
  and is served straight from ``raw``).

String document ids map to Qdrant ids with ``uuid5`` (deterministic, so re-ingesting an id
upserts the same point); the original id is kept in the payload as ``doc_id``.

Local mode (``location=":memory:"`` or a folder) is the embedded default; local mode allows
one client per folder, so this class serialises its calls with a lock. With ``url`` the same
calls go to a Qdrant server.

Security: qdrant-client's local mode stores every point *pickled* in SQLite
(``<folder>/collection/<name>/storage.sqlite``) and unpickles it on open, so whoever can
write the folder can run code as the engine's user. A folder this class creates is made
private (mode 0700); opening one that is group- or world-writable logs a warning and is
counted (:attr:`QdrantStore.permission_warnings`).

Empty documents (payload flag ``_ag_empty``, see :mod:`antigravity.core.documents`) are stored
and counted but never returned by :meth:`QdrantStore.search`: it asks for ``k + n_empty + 1``
hits, drops the flagged ones, and asks again for more when that was not enough or when a tie
crosses the ``k``-th place (:func:`antigravity.stores.shared.ranked_search`; ties are ordered
by document id).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from antigravity.core.documents import EMPTY_FLAG
from antigravity.core.errors import StoreError
from antigravity.settings import mask_url
from antigravity.stores.base import RAW, SLOTS
from antigravity.stores.filters import parse_filter
from antigravity.stores.shared import (
    check_dim, check_index, check_missing, check_rows, check_search, check_slot, check_upsert, id_list, open_folder, payload_rows, point_id, ranked_search,
    require_collection, retrieved, same_dim, split_payload, vector_batch, vector_names,
)

__all__ = ["RAW", "SLOTS", "QdrantStore", "point_id"]

logger = logging.getLogger(__name__)


class QdrantStore:
    """A Qdrant collection holding raw and served vectors of documents; implements
    :class:`antigravity.stores.base.VectorStore`.

    Args:
        location: ``":memory:"`` or a folder for embedded (local) mode.
        url: Qdrant server URL (overrides ``location``); ``api_key`` for it.
        collection: collection name.
        create_options: ``shard_number`` / ``replication_factor`` / ``write_consistency_factor``
            for a new collection on a server or cluster (see ``QdrantClient.create_collection``).
        on_disk: a new collection keeps its vectors in memory-mapped files (Qdrant's
            ``VectorParams.on_disk``; local mode ignores it).

    Raises:
        StoreError: the folder is locked by another process, or the server is unreachable.
    """

    def __init__(
        self,
        location: str | None = ":memory:",
        *,
        url: str | None = None,
        api_key: str | None = None,
        collection: str = "antigravity",
        timeout_s: float = 30.0,
        create_options: dict[str, Any] | None = None,
        create: bool = True,
        on_disk: bool = False,
    ) -> None:
        from qdrant_client import QdrantClient

        self.collection = collection
        self.remote = bool(url)
        self.location = None if url else location
        self.create_options = {k: v for k, v in (create_options or {}).items() if v is not None}
        self.on_disk = bool(on_disk)
        self.permission_warnings: list[str] = []
        self.n_empty = 0
        where = mask_url(url) if url else location
        if not url and location != ":memory:":
            self.permission_warnings = open_folder(location, create)
        try:
            if url:
                self.client = QdrantClient(url=url, api_key=api_key, timeout=max(1, int(timeout_s)), check_compatibility=False)
                self.client.get_collections()  # fail fast when unreachable
            else:
                self.client = QdrantClient(location=location, force_disable_check_same_thread=True) if location == ":memory:" else QdrantClient(path=location, force_disable_check_same_thread=True)
        except Exception as exc:  # noqa: BLE001 - qdrant raises many types
            raise StoreError(mask_url(f"cannot open Qdrant store at {where!r}: {type(exc).__name__}: {exc}").replace("\n", " ")) from exc
        self._lock: contextlib.AbstractContextManager = threading.RLock() if not url else contextlib.nullcontext()
        self.dim: int | None = None
        if self.client.collection_exists(collection):
            info = self.client.get_collection(collection)
            vectors = info.config.params.vectors
            if not isinstance(vectors, dict) or RAW not in vectors:
                raise StoreError(f"collection {collection!r} exists but was not created by Antigravity (no 'raw' vector)")
            self.dim = int(vectors[RAW].size)
            self.n_empty = self.count_empty()

    # -- files of the embedded store (for error messages) -----------------------------
    @property
    def meta_file(self) -> Path | None:
        """Local mode: the store's ``meta.json`` (lists the collections); else ``None``."""
        return None if self.remote or self.location in (None, ":memory:") else Path(self.location) / "meta.json"

    @property
    def collection_dir(self) -> Path | None:
        """Local mode: the folder holding the collection's ``storage.sqlite``; else ``None``."""
        return None if self.remote or self.location in (None, ":memory:") else Path(self.location) / "collection" / self.collection

    def describe(self) -> str:
        """Where the collection lives, for messages (URL credentials masked)."""
        if self.collection_dir is not None:
            return str(self.collection_dir / "storage.sqlite")
        return f"collection {self.collection!r} on {'a Qdrant server' if self.remote else 'an in-memory store'}"

    def drop_collection(self) -> None:
        """Delete the collection and every point in it (a deliberate re-index)."""
        with self._lock:
            if self.client.collection_exists(self.collection):
                self.client.delete_collection(self.collection)
        self.dim = None
        self.n_empty = 0

    def count_empty(self) -> int:
        """Number of stored empty documents (payload flag ``_ag_empty``)."""
        from qdrant_client import models

        if self.dim is None:
            return 0
        flt = models.Filter(must=[models.FieldCondition(key=EMPTY_FLAG, match=models.MatchValue(value=True))])
        with self._lock:
            return int(self.client.count(self.collection, count_filter=flt, exact=True).count)

    def retrieve(self, doc_ids: Sequence[str], with_vectors: bool | Sequence[str] = False) -> dict[str, dict[str, Any]]:
        """``{doc_id: payload}`` of the stored documents among ``doc_ids`` (missing ones absent);
        with ``with_vectors`` (``True`` or vector names) ``{doc_id: {"payload": ..., "vectors":
        {name: (d,) float32}}}`` (see :meth:`antigravity.stores.base.VectorStore.retrieve`)."""
        ids, names = id_list(doc_ids, "retrieve"), vector_names(with_vectors)
        if self.dim is None or not ids:
            return {}
        with self._lock:
            pts = self.client.retrieve(self.collection, ids=[point_id(d) for d in ids], with_payload=True, with_vectors=names or False)
        return retrieved(pts, names if with_vectors else None)

    def ensure_collection(self, dim: int) -> None:
        """Create the collection for ``dim``-dimensional vectors if missing.

        Raises:
            StoreError: ``dim`` is not an integer in 1..65536, or the collection exists with another dimension.
        """
        from qdrant_client import models

        dim = check_dim(dim)
        if same_dim(self.collection, self.dim, dim):
            return
        params = models.VectorParams(size=int(dim), distance=models.Distance.COSINE, on_disk=self.on_disk or None)
        with self._lock:
            self.client.create_collection(self.collection, vectors_config={n: params for n in (RAW, *SLOTS)}, **self.create_options)
        self.dim = int(dim)

    def upsert(
        self,
        doc_ids: Sequence[str],
        raw: np.ndarray,
        payloads: Sequence[dict[str, Any]],
        served: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Upsert documents: ``raw`` ``(n, d) float32``, ``served`` ``{slot: (n, d) float32}``.

        Raises:
            StoreError: the collection does not exist, counts or shapes differ, or a payload is
                not a JSON object (names the document).
            DocumentError: a raw or served vector holds NaN or inf (names the documents).
            Nothing is written when any of these is raised.
        """
        from qdrant_client import models

        served = dict(served or {})
        ids = id_list(doc_ids, "upsert")
        check_upsert(ids, raw, payloads, served)
        require_collection("upsert", self.collection, self.dim, self.describe())
        if not ids:
            return
        raw_arr = check_rows("upsert: raw", raw, ids, self.dim, self.collection)
        served = {slot: check_rows(f"upsert: served[{slot!r}]", mat, ids, self.dim, self.collection) for slot, mat in served.items()}
        payload_list, _ = payload_rows("upsert", ids, payloads)
        points = [
            models.PointStruct(id=point_id(d), vector={RAW: raw_arr[i].tolist(), **{slot: m[i].tolist() for slot, m in served.items()}}, payload=payload_list[i])
            for i, d in enumerate(ids)
        ]
        with self._lock:
            self.client.upsert(self.collection, points=points, wait=True)

    def set_served(self, doc_ids: Sequence[str], slot: str, vectors: np.ndarray) -> None:
        """Overwrite the ``slot`` vectors of existing points (``(n, d) float32``).

        Raises:
            StoreError: ``slot`` is not one of :data:`SLOTS`, the collection does not exist,
                ``vectors`` is not ``(n, d)``, or an id is not stored (names it).
            DocumentError: a vector holds NaN or inf (names the documents).
            Nothing is written when any of these is raised.
        """
        from qdrant_client import models

        check_slot(slot)
        ids = id_list(doc_ids, "set_served")
        with self._lock:
            require_collection("set_served", self.collection, self.dim, self.describe())
            if not ids:
                return
            vectors = check_rows(f"set_served: vectors for {slot!r}", vectors, ids, self.dim, self.collection)
            check_missing("set_served", ids, self.existing_ids(ids))
            points = [models.PointVectors(id=point_id(d), vector={slot: vectors[i].tolist()}) for i, d in enumerate(ids)]
            self.client.update_vectors(self.collection, points=points, wait=True)

    def clear_served(self, slot: str) -> None:
        """Remove every ``slot`` vector (qdrant-client ``delete_vectors`` over all points).

        Raises:
            StoreError: ``slot`` is not one of :data:`SLOTS`.
        """
        from qdrant_client import models

        check_slot(slot)
        if self.dim is None:
            return
        with self._lock:
            self.client.delete_vectors(self.collection, vectors=[slot], points=models.FilterSelector(filter=models.Filter()), wait=True)

    def search(self, vectors: np.ndarray, using: str, k: int, filter: Any = None) -> list[list[tuple[str, float, dict]]]:
        """Top-``k`` cosine search for each row of ``vectors`` (``(m, d) float32``) against the
        named vector ``using``, optionally restricted by ``filter`` (dict form or
        ``qdrant_client.models.Filter``, :func:`~antigravity.stores.filters.parse_filter`).
        Returns per query ``[(doc_id, score, payload), ...]``, score descending then doc id.

        Raises:
            QueryError: ``k`` is not an integer >= 0, a query vector holds NaN or inf, or a
                malformed filter (nothing is sent to Qdrant).
            StoreError: an unknown vector name, or ``vectors`` is not ``(m, d)``.
        """
        from qdrant_client import models

        vectors, k = check_search(vectors, using, k, self.dim, self.collection)
        flt = parse_filter(filter)
        if self.dim is None:
            return [[] for _ in range(len(vectors))]

        def fetch(rows: list[int], limit: int) -> list[list[tuple[float, dict]]]:
            reqs = [models.QueryRequest(query=vectors[i].tolist(), using=using, limit=limit, with_payload=True, filter=flt) for i in rows]
            with self._lock:
                responses = self.client.query_batch_points(self.collection, requests=reqs)
            return [[(p.score, p.payload) for p in resp.points] for resp in responses]

        return ranked_search(fetch, len(vectors), k, self.n_empty)

    def delete(self, doc_ids: Sequence[str]) -> None:
        """Delete the documents ``doc_ids`` (unknown ids ignored) and recount :attr:`n_empty`."""
        from qdrant_client import models

        ids = id_list(doc_ids, "delete")
        if self.dim is None or not ids:
            return
        with self._lock:
            self.client.delete(self.collection, points_selector=models.PointIdsList(points=[point_id(d) for d in ids]), wait=True)
            self.n_empty = self.count_empty()

    def create_payload_index(self, field: str, schema: str) -> None:
        """Index payload ``field`` as ``schema`` (``keyword`` / ``integer`` / ``float`` / ``bool``).
        Local mode has no payload indexes: a no-op there (qdrant-client's warning is silenced)."""
        from qdrant_client import models

        check_index(field, schema)
        if self.dim is None:
            raise StoreError(f"collection {self.collection!r} does not exist yet: no payload index can be created")
        with self._lock, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Payload indexes have no effect in the local Qdrant")
            self.client.create_payload_index(self.collection, field_name=field, field_schema=models.PayloadSchemaType(schema), wait=True)

    def optimize(self) -> None:
        """No-op: local mode searches exactly and a server optimises in the background."""

    def indexed_vectors_count(self) -> int:
        """Qdrant's ``indexed_vectors_count`` of the collection (0 in local mode or without a collection)."""
        if self.dim is None:
            return 0
        with self._lock:
            return int(self.client.get_collection(self.collection).indexed_vectors_count or 0)

    def count(self) -> int:
        """Number of documents stored."""
        if self.dim is None:
            return 0
        with self._lock:
            return int(self.client.count(self.collection, exact=True).count)

    def count_vectors(self, name: str) -> int:
        """Points holding vector ``name`` (Qdrant's ``HasVectorCondition``); 0 without a collection."""
        if self.dim is None:
            return 0
        from qdrant_client import models

        flt = models.Filter(must=[models.HasVectorCondition(has_vector=name)])
        with self._lock:
            return int(self.client.count(self.collection, count_filter=flt, exact=True).count)

    def existing_ids(self, doc_ids: Sequence[str]) -> set[str]:
        """The subset of ``doc_ids`` already stored."""
        if self.dim is None or not doc_ids:
            return set()
        with self._lock:
            pts = self.client.retrieve(self.collection, ids=[point_id(d) for d in doc_ids], with_payload=["doc_id"])
        return {str(p.payload["doc_id"]) for p in pts}

    def iter_payloads(self, batch_size: int = 1024) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield ``(doc_id, payload)`` for every stored document."""
        if self.dim is None:
            return
        offset = None
        while True:
            with self._lock:
                pts, offset = self.client.scroll(self.collection, limit=batch_size, offset=offset, with_payload=True, with_vectors=False)
            yield from (split_payload(p.payload) for p in pts)
            if offset is None:
                break

    def iter_vectors(self, names: Sequence[str] = (RAW,), batch_size: int = 1024) -> Iterator[tuple[list[str], dict[str, np.ndarray]]]:
        """Yield ``(doc_ids, {name: (b, d) float32})`` batches over all stored documents."""
        if self.dim is None:
            return
        offset = None
        while True:
            with self._lock:
                pts, offset = self.client.scroll(
                    self.collection, limit=batch_size, offset=offset, with_payload=["doc_id"], with_vectors=list(names)
                )
            if pts:
                yield [str(p.payload["doc_id"]) for p in pts], vector_batch(self.dim, names, [p.vector for p in pts])
            if offset is None:
                break

    def close(self) -> None:
        """Close the client (releases the local-mode folder lock)."""
        with self._lock:
            try:
                self.client.close()
            except Exception:  # noqa: BLE001 - closing twice or at shutdown is harmless
                pass
