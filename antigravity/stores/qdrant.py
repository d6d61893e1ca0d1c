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
import time
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
    backend_errors, check_dim, check_index, check_missing, check_rows, check_search, check_slot, check_upsert, id_list, open_folder, payload_rows, point_id,
    ranked_search,
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

    Errors of qdrant-client after open (a server gone away, a collection dropped by another
    process, a refused request: ``ResponseHandlingException``, ``UnexpectedResponse``, httpx
    and gRPC errors, ``ValueError`` of local mode...) become a one-line
    :class:`~antigravity.core.errors.StoreError` naming the operation and the collection (URL
    credentials and the API key masked); the documented ``QueryError`` / ``DocumentError`` of
    argument checks are raised as they are.

    With a server, another process may create the collection after this store opened: while
    :attr:`dim` is ``None``, reads first ask the server again whether it exists (at most once
    per :attr:`recheck_s` seconds, so an empty store stays cheap) and load it when it does.

    Raises:
        StoreError: the folder is locked by another process, the server is unreachable, or
            the collection exists but was not created by Antigravity.
    """

    #: seconds between two checks, by the reads of a server store with no collection, whether
    #: another process has created it
    recheck_s = 1.0

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
        self.url = mask_url(url) if url else None
        self._secret = api_key or None
        self._checked_at: float | None = None  # last re-check of a missing collection (server): none yet
        where = self.url or location
        if not url and location != ":memory:":
            self.permission_warnings = open_folder(location, create)
        try:
            if url:
                self.client = QdrantClient(url=url, api_key=api_key, timeout=max(1, int(timeout_s)), check_compatibility=False)
                self.client.get_collections()  # fail fast when unreachable
            else:
                self.client = QdrantClient(location=location, force_disable_check_same_thread=True) if location == ":memory:" else QdrantClient(path=location, force_disable_check_same_thread=True)
        except Exception as exc:  # noqa: BLE001 - qdrant raises many types
            raise StoreError(self._masked(f"cannot open Qdrant store at {where!r}: {type(exc).__name__}: {exc}")) from exc
        self._lock: contextlib.AbstractContextManager = threading.RLock() if not url else contextlib.nullcontext()
        self.dim: int | None = None
        self._load_collection("open", f"cannot open Qdrant store at {where!r}")

    # -- errors and the collection of another process -------------------------------------
    def _masked(self, text: str) -> str:
        """``text`` on one line (at most ~600 characters), URL credentials and the API key masked."""
        text = mask_url(text).replace("\r", " ").replace("\n", " ")
        if self._secret:
            text = text.replace(self._secret, "***")
        return text if len(text) <= 600 else text[:600] + " ..."

    def _errors(self, what: str, head: str | None = None) -> contextlib.AbstractContextManager:
        """Turn a qdrant-client error (httpx, grpc, pydantic, ``ValueError``...) into a one-line
        StoreError (:func:`~antigravity.stores.shared.backend_errors`): ``"<what> failed on
        <store>: <type>: <message>"`` (or ``"<head>: ..."``), secrets masked."""
        return backend_errors(lambda: head or f"{what} failed on {self.describe()}", Exception, lambda msg, exc: self._masked(msg))

    def _load_collection(self, what: str, head: str | None = None) -> None:
        """Read the collection's dimension (and empty count) when it exists; :attr:`dim` stays
        ``None`` when it does not.

        Raises:
            StoreError: the collection exists but was not created by Antigravity, or Qdrant fails.
        """
        with self._lock, self._errors(what, head):
            if not self.client.collection_exists(self.collection):
                return
            vectors = self.client.get_collection(self.collection).config.params.vectors
        if not isinstance(vectors, dict) or RAW not in vectors:
            raise StoreError(f"collection {self.collection!r} exists but was not created by Antigravity (no 'raw' vector)")
        dim = int(vectors[RAW].size)
        self.n_empty = self._count_empty(dim)
        self.dim = dim

    def _recheck(self, force: bool = False) -> None:
        """A server store with no collection: ask whether another process created it since
        (at most once per :attr:`recheck_s` seconds unless ``force``) and load it."""
        if self.dim is not None or not self.remote:
            return
        now = time.monotonic()
        if not force and self._checked_at is not None and now - self._checked_at < self.recheck_s:
            return
        self._checked_at = now
        self._load_collection("check for the collection")

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
        if self.remote:
            return f"collection {self.collection!r} on the Qdrant server {self.url}"
        return f"collection {self.collection!r} on an in-memory store"

    def drop_collection(self) -> None:
        """Delete the collection and every point in it (a deliberate re-index).

        Raises:
            StoreError: Qdrant fails (names the collection).
        """
        with self._lock, self._errors("drop_collection"):
            if self.client.collection_exists(self.collection):
                self.client.delete_collection(self.collection)
        self.dim = None
        self.n_empty = 0

    def count_empty(self) -> int:
        """Number of stored empty documents (payload flag ``_ag_empty``).

        Raises:
            StoreError: Qdrant fails (names the collection).
        """
        self._recheck()
        return self._count_empty(self.dim)

    def _count_empty(self, dim: int | None) -> int:
        from qdrant_client import models

        if dim is None:
            return 0
        flt = models.Filter(must=[models.FieldCondition(key=EMPTY_FLAG, match=models.MatchValue(value=True))])
        with self._lock, self._errors("count"):
            return int(self.client.count(self.collection, count_filter=flt, exact=True).count)

    def retrieve(self, doc_ids: Sequence[str], with_vectors: bool | Sequence[str] = False) -> dict[str, dict[str, Any]]:
        """``{doc_id: payload}`` of the stored documents among ``doc_ids`` (missing ones absent);
        with ``with_vectors`` (``True`` or vector names) ``{doc_id: {"payload": ..., "vectors":
        {name: (d,) float32}}}`` (see :meth:`antigravity.stores.base.VectorStore.retrieve`).

        Raises:
            StoreError: an unknown vector name, or Qdrant fails (names the collection).
        """
        ids, names = id_list(doc_ids, "retrieve"), vector_names(with_vectors)
        self._recheck()
        if self.dim is None or not ids:
            return {}
        with self._lock, self._errors("retrieve"):
            pts = self.client.retrieve(self.collection, ids=[point_id(d) for d in ids], with_payload=True, with_vectors=names or False)
        return retrieved(pts, names if with_vectors else None)

    def ensure_collection(self, dim: int) -> None:
        """Create the collection for ``dim``-dimensional vectors if missing.

        Raises:
            StoreError: ``dim`` is not an integer in 1..65536, the collection exists with another
                dimension (also one another process created on the server), or Qdrant fails.
        """
        from qdrant_client import models

        dim = check_dim(dim)
        self._recheck(force=True)  # a server: another process may have created it meanwhile
        if same_dim(self.collection, self.dim, dim):
            return
        params = models.VectorParams(size=int(dim), distance=models.Distance.COSINE, on_disk=self.on_disk or None)
        with self._lock, self._errors("create collection"):
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
            StoreError: the collection does not exist, counts or shapes differ, a payload is
                not a JSON object (names the document), or Qdrant fails (names the collection).
            DocumentError: a raw or served vector holds NaN or inf (names the documents).
            Nothing is written when a check fails; when Qdrant fails the write may be partly applied.
        """
        from qdrant_client import models

        served = dict(served or {})
        ids = id_list(doc_ids, "upsert")
        check_upsert(ids, raw, payloads, served)
        self._recheck()
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
        with self._lock, self._errors("upsert"):
            self.client.upsert(self.collection, points=points, wait=True)

    def set_served(self, doc_ids: Sequence[str], slot: str, vectors: np.ndarray) -> None:
        """Overwrite the ``slot`` vectors of existing points (``(n, d) float32``).

        Raises:
            StoreError: ``slot`` is not one of :data:`SLOTS`, the collection does not exist,
                ``vectors`` is not ``(n, d)``, an id is not stored (names it), or Qdrant fails
                (names the collection).
            DocumentError: a vector holds NaN or inf (names the documents).
            Nothing is written when a check fails; when Qdrant fails the write may be partly applied.
        """
        from qdrant_client import models

        check_slot(slot)
        ids = id_list(doc_ids, "set_served")
        self._recheck()
        with self._lock:
            require_collection("set_served", self.collection, self.dim, self.describe())
            if not ids:
                return
            vectors = check_rows(f"set_served: vectors for {slot!r}", vectors, ids, self.dim, self.collection)
            check_missing("set_served", ids, self.existing_ids(ids))
            points = [models.PointVectors(id=point_id(d), vector={slot: vectors[i].tolist()}) for i, d in enumerate(ids)]
            with self._errors("set_served"):
                self.client.update_vectors(self.collection, points=points, wait=True)

    def clear_served(self, slot: str) -> None:
        """Remove every ``slot`` vector (qdrant-client ``delete_vectors`` over all points).

        Raises:
            StoreError: ``slot`` is not one of :data:`SLOTS`, or Qdrant fails (names the collection).
        """
        from qdrant_client import models

        check_slot(slot)
        self._recheck()
        if self.dim is None:
            return
        with self._lock, self._errors("clear_served"):
            self.client.delete_vectors(self.collection, vectors=[slot], points=models.FilterSelector(filter=models.Filter()), wait=True)

    def search(self, vectors: np.ndarray, using: str, k: int, filter: Any = None) -> list[list[tuple[str, float, dict]]]:
        """Top-``k`` cosine search for each row of ``vectors`` (``(m, d) float32``) against the
        named vector ``using``, optionally restricted by ``filter`` (dict form or
        ``qdrant_client.models.Filter``, :func:`~antigravity.stores.filters.parse_filter`).
        Returns per query ``[(doc_id, score, payload), ...]``, score descending then doc id.

        Raises:
            QueryError: ``k`` is not an integer in 0..``MAX_K`` (:func:`~antigravity.stores.shared.check_k`;
                names it), a query vector holds NaN or inf, or a malformed filter (nothing is
                sent to Qdrant).
            StoreError: an unknown vector name, ``vectors`` is not ``(m, d)``, or Qdrant fails
                (names the collection).
        """
        from qdrant_client import models

        self._recheck()
        vectors, k = check_search(vectors, using, k, self.dim, self.collection)
        flt = parse_filter(filter)
        if self.dim is None:
            return [[] for _ in range(len(vectors))]

        def fetch(rows: list[int], limit: int) -> list[list[tuple[float, dict]]]:
            reqs = [models.QueryRequest(query=vectors[i].tolist(), using=using, limit=limit, with_payload=True, filter=flt) for i in rows]
            with self._lock, self._errors("search"):
                responses = self.client.query_batch_points(self.collection, requests=reqs)
            return [[(p.score, p.payload) for p in resp.points] for resp in responses]

        return ranked_search(fetch, len(vectors), k, self.n_empty)

    def delete(self, doc_ids: Sequence[str]) -> None:
        """Delete the documents ``doc_ids`` (unknown ids ignored) and recount :attr:`n_empty`.

        Raises:
            StoreError: Qdrant fails (names the collection).
        """
        from qdrant_client import models

        ids = id_list(doc_ids, "delete")
        self._recheck()
        if self.dim is None or not ids:
            return
        with self._lock:
            with self._errors("delete"):
                self.client.delete(self.collection, points_selector=models.PointIdsList(points=[point_id(d) for d in ids]), wait=True)
            self.n_empty = self._count_empty(self.dim)

    def create_payload_index(self, field: str, schema: str) -> None:
        """Index payload ``field`` as ``schema`` (``keyword`` / ``integer`` / ``float`` / ``bool``).
        Local mode has no payload indexes: a no-op there (qdrant-client's warning is silenced).

        Raises:
            QueryError: unknown schema, or an empty or reserved field.
            StoreError: the collection does not exist yet, or Qdrant fails (names the collection).
        """
        from qdrant_client import models

        check_index(field, schema)
        self._recheck()
        if self.dim is None:
            raise StoreError(f"collection {self.collection!r} does not exist yet: no payload index can be created")
        with self._lock, self._errors("create_payload_index"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Payload indexes have no effect in the local Qdrant")
            self.client.create_payload_index(self.collection, field_name=field, field_schema=models.PayloadSchemaType(schema), wait=True)

    def optimize(self) -> None:
        """No-op: local mode searches exactly and a server optimises in the background."""

    def indexed_vectors_count(self) -> int:
        """Qdrant's ``indexed_vectors_count`` of the collection (0 in local mode or without a collection).

        Raises:
            StoreError: Qdrant fails (names the collection).
        """
        self._recheck()
        if self.dim is None:
            return 0
        with self._lock, self._errors("info"):
            return int(self.client.get_collection(self.collection).indexed_vectors_count or 0)

    def count(self) -> int:
        """Number of documents stored.

        Raises:
            StoreError: Qdrant fails (names the collection).
        """
        self._recheck()
        if self.dim is None:
            return 0
        with self._lock, self._errors("count"):
            return int(self.client.count(self.collection, exact=True).count)

    def count_vectors(self, name: str) -> int:
        """Points holding vector ``name`` (Qdrant's ``HasVectorCondition``); 0 without a collection.

        Raises:
            StoreError: Qdrant fails (names the collection).
        """
        self._recheck()
        if self.dim is None:
            return 0
        from qdrant_client import models

        flt = models.Filter(must=[models.HasVectorCondition(has_vector=name)])
        with self._lock, self._errors("count"):
            return int(self.client.count(self.collection, count_filter=flt, exact=True).count)

    def existing_ids(self, doc_ids: Sequence[str]) -> set[str]:
        """The subset of ``doc_ids`` already stored.

        Raises:
            StoreError: Qdrant fails (names the collection).
        """
        self._recheck()
        if self.dim is None or not doc_ids:
            return set()
        with self._lock, self._errors("retrieve"):
            pts = self.client.retrieve(self.collection, ids=[point_id(d) for d in doc_ids], with_payload=["doc_id"])
        return {str(p.payload["doc_id"]) for p in pts}

    def iter_payloads(self, batch_size: int = 1024) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield ``(doc_id, payload)`` for every stored document.

        Raises:
            StoreError: Qdrant fails (names the collection).
        """
        self._recheck()
        if self.dim is None:
            return
        offset = None
        while True:
            with self._lock, self._errors("scroll"):
                pts, offset = self.client.scroll(self.collection, limit=batch_size, offset=offset, with_payload=True, with_vectors=False)
            yield from (split_payload(p.payload) for p in pts)
            if offset is None:
                break

    def iter_vectors(self, names: Sequence[str] = (RAW,), batch_size: int = 1024) -> Iterator[tuple[list[str], dict[str, np.ndarray]]]:
        """Yield ``(doc_ids, {name: (b, d) float32})`` batches over all stored documents.

        Raises:
            StoreError: Qdrant fails (names the collection).
        """
        self._recheck()
        if self.dim is None:
            return
        offset = None
        while True:
            with self._lock, self._errors("scroll"):
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
