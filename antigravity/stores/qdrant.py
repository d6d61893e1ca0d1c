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
and counted but never returned by :meth:`QdrantStore.search`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from antigravity.core.documents import EMPTY_FLAG
from antigravity.core.errors import StoreError
from antigravity.core.files import check_permissions, make_private_dir
from antigravity.settings import mask_url
from antigravity.stores.base import RAW, SLOTS

__all__ = ["RAW", "SLOTS", "QdrantStore", "point_id"]

logger = logging.getLogger(__name__)

_NAMESPACE = uuid.UUID("6f1d7c52-3c1a-4d7e-9a55-2b8a3c0e9f11")


def point_id(doc_id: str) -> str:
    """Deterministic Qdrant point id (uuid5 string) for a document id."""
    return str(uuid.uuid5(_NAMESPACE, doc_id))






class QdrantStore:
    """A Qdrant collection holding raw and served vectors of documents; implements
    :class:`antigravity.stores.base.VectorStore`.

    Args:
        location: ``":memory:"`` or a folder for embedded (local) mode.
        url: Qdrant server URL (overrides ``location``); ``api_key`` for it.
        collection: collection name.
        create_options: ``shard_number`` / ``replication_factor`` / ``write_consistency_factor``
            for a new collection on a server or cluster (see ``QdrantClient.create_collection``).

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
    ) -> None:
        from qdrant_client import QdrantClient

        self.collection = collection
        self.remote = bool(url)
        self.location = None if url else location
        self.create_options = {k: v for k, v in (create_options or {}).items() if v is not None}
        self.permission_warnings: list[str] = []
        self.n_empty = 0
        where = mask_url(url) if url else location
        if not url and location != ":memory:":
            if not Path(location).expanduser().is_dir():
                if not create:
                    raise StoreError(f"no store at {str(location)!r}: the folder does not exist (mistyped --data-dir?); nothing was created")
                make_private_dir(location)
            self.permission_warnings = check_permissions(location)
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

    def retrieve(self, doc_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """``{doc_id: payload}`` of the stored documents among ``doc_ids`` (missing ones absent)."""
        if self.dim is None or not doc_ids:
            return {}
        with self._lock:
            pts = self.client.retrieve(self.collection, ids=[point_id(d) for d in doc_ids], with_payload=True)
        out = {}
        for p in pts:
            payload = dict(p.payload or {})
            out[str(payload.pop("doc_id"))] = payload
        return out

    def ensure_collection(self, dim: int) -> None:
        """Create the collection for ``dim``-dimensional vectors if missing.

        Raises:
            StoreError: the collection exists with another dimension.
        """
        from qdrant_client import models

        if self.dim is not None:
            if self.dim != dim:
                raise StoreError(f"collection {self.collection!r} holds {self.dim}-d vectors; the student makes {dim}-d")
            return
        params = models.VectorParams(size=int(dim), distance=models.Distance.COSINE)
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
        """Upsert documents: ``raw`` ``(n, d) float32``, ``served`` ``{slot: (n, d) float32}``."""
        from qdrant_client import models

        served = served or {}
        points = []
        for i, did in enumerate(doc_ids):
            vec = {RAW: raw[i].tolist()}
            for slot, mat in served.items():
                vec[slot] = mat[i].tolist()
            points.append(models.PointStruct(id=point_id(did), vector=vec, payload={**payloads[i], "doc_id": did}))
        with self._lock:
            self.client.upsert(self.collection, points=points, wait=True)

    def set_served(self, doc_ids: Sequence[str], slot: str, vectors: np.ndarray) -> None:
        """Overwrite the ``slot`` vectors of existing points (``(n, d) float32``)."""
        from qdrant_client import models

        if slot not in SLOTS:
            raise StoreError(f"unknown slot {slot!r}")
        points = [models.PointVectors(id=point_id(d), vector={slot: vectors[i].tolist()}) for i, d in enumerate(doc_ids)]
        with self._lock:
            self.client.update_vectors(self.collection, points=points, wait=True)

    def search(self, vectors: np.ndarray, using: str, k: int) -> list[list[tuple[str, float, dict]]]:
        """Top-``k`` cosine search for each row of ``vectors`` (``(m, d) float32``) against the
        named vector ``using``. Returns per query ``[(doc_id, score, payload), ...]``."""
        from qdrant_client import models

        if self.dim is None:
            return [[] for _ in range(len(vectors))]
        hidden = self.n_empty  # empty documents are never results: ask for that many more, drop them
        reqs = [
            models.QueryRequest(query=v.tolist(), using=using, limit=int(k) + hidden, with_payload=True) for v in vectors
        ]
        with self._lock:
            responses = self.client.query_batch_points(self.collection, requests=reqs)
        out = []
        for resp in responses:
            hits = []
            for p in resp.points:
                payload = dict(p.payload or {})
                if payload.get(EMPTY_FLAG):
                    continue
                hits.append((str(payload.pop("doc_id", p.id)), float(p.score), payload))
            out.append(hits[: int(k)])
        return out

    def count(self) -> int:
        """Number of documents stored."""
        if self.dim is None:
            return 0
        with self._lock:
            return int(self.client.count(self.collection, exact=True).count)

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
            for p in pts:
                payload = dict(p.payload or {})
                yield str(payload.pop("doc_id")), payload
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
                ids = [str(p.payload["doc_id"]) for p in pts]
                mats = {}
                for n in names:
                    rows = [p.vector.get(n) if isinstance(p.vector, dict) else None for p in pts]
                    mats[n] = np.array([r if r is not None else np.zeros(self.dim) for r in rows], dtype=np.float32)
                yield ids, mats
            if offset is None:
                break

    def close(self) -> None:
        """Close the client (releases the local-mode folder lock)."""
        with self._lock:
            try:
                self.client.close()
            except Exception:  # noqa: BLE001 - closing twice or at shutdown is harmless
                pass
