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
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .errors import StoreError

RAW = "raw"
SLOTS = ("served_a", "served_b")
_NAMESPACE = uuid.UUID("6f1d7c52-3c1a-4d7e-9a55-2b8a3c0e9f11")


def point_id(doc_id: str) -> str:
    """Deterministic Qdrant point id (uuid5 string) for a document id."""
    return str(uuid.uuid5(_NAMESPACE, doc_id))


class QdrantStore:
    """A Qdrant collection holding raw and served vectors of documents.

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
    ) -> None:
        from qdrant_client import QdrantClient

        self.collection = collection
        self.remote = bool(url)
        self.create_options = {k: v for k, v in (create_options or {}).items() if v is not None}
        try:
            if url:
                self.client = QdrantClient(url=url, api_key=api_key, timeout=max(1, int(timeout_s)), check_compatibility=False)
                self.client.get_collections()  # fail fast when unreachable
            else:
                if location != ":memory:":
                    Path(location).mkdir(parents=True, exist_ok=True)
                self.client = QdrantClient(location=location, force_disable_check_same_thread=True) if location == ":memory:" else QdrantClient(path=location, force_disable_check_same_thread=True)
        except Exception as exc:  # noqa: BLE001 - qdrant raises many types
            where = url or location
            raise StoreError(f"cannot open Qdrant store at {where!r}: {exc}") from exc
        self._lock: contextlib.AbstractContextManager = threading.RLock() if not url else contextlib.nullcontext()
        self.dim: int | None = None
        if self.client.collection_exists(collection):
            info = self.client.get_collection(collection)
            vectors = info.config.params.vectors
            if not isinstance(vectors, dict) or RAW not in vectors:
                raise StoreError(f"collection {collection!r} exists but was not created by Antigravity (no 'raw' vector)")
            self.dim = int(vectors[RAW].size)

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
        reqs = [
            models.QueryRequest(query=v.tolist(), using=using, limit=int(k), with_payload=True) for v in vectors
        ]
        with self._lock:
            responses = self.client.query_batch_points(self.collection, requests=reqs)
        out = []
        for resp in responses:
            hits = []
            for p in resp.points:
                payload = dict(p.payload or {})
                hits.append((str(payload.pop("doc_id", p.id)), float(p.score), payload))
            out.append(hits)
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
