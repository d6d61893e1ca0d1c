"""Vector store on Qdrant Edge (``qdrant-edge-py``, module ``qdrant_edge``): Qdrant's engine
embedded in the process as one shard per collection, no server and no SQLite.

Layout: ``<location>/<collection>/`` is the shard folder (``edge_config.json``, ``wal/``,
``segments/``); ``location=":memory:"`` puts it in a temporary folder that :meth:`EdgeStore.close`
removes. Points, payloads and ids are laid out as in
:class:`~antigravity.stores.qdrant.QdrantStore` (shared helpers in
:mod:`antigravity.stores.shared`): ``uuid5`` point ids (:func:`~antigravity.stores.shared.point_id`),
the document id in the payload as ``doc_id``, empty documents flagged ``_ag_empty`` and never
returned by :meth:`EdgeStore.search` — which, like QdrantStore, over-fetches ``k + n_empty + 1``
hits and drops the flagged ones (:func:`~antigravity.stores.shared.ranked_search`) rather than
sending a ``must_not`` filter: measured at 20k points, that filter made a single query ~6 ms
instead of ~0.7 ms exact / ~0.35 ms HNSW.

Vectors (all ``d``-dimensional, cosine; Qdrant stores them normalised):

* ``raw``: the student's embedding. With ``raw_hnsw=False`` (default) it gets no HNSW graph
  (``m=0``), so a search on it is always exact; ``raw_hnsw=True`` indexes it like the slots.
* ``served_a`` / ``served_b``: HNSW with Qdrant's parameters ``m`` (edges per node, default
  16) and ``ef_construct`` (build-time candidates, default 100); ``hnsw_ef`` (search-time
  candidates, default ``None`` = Qdrant's choice) is passed with every search. Source:
  https://qdrant.tech/documentation/concepts/indexing/#vector-index and
  https://qdrant.tech/documentation/guides/optimize/.

Indexing: the shard has no background optimizer. Points are searched exactly (brute force)
until :meth:`EdgeStore.optimize` builds the HNSW graph of every segment larger than
``indexing_threshold`` KB (Qdrant's default 10000 KB, about 6700 384-d vectors); points
written after that are searched exactly until the next ``optimize()``.
:meth:`EdgeStore.indexed_vectors_count` tells how many vectors are indexed. A filtered search
uses the graph only when the filter matches more than ``full_scan_threshold`` KB of vectors
(Qdrant's query planner; default 10000).

Threads and locks: every ``EdgeShard`` method of the Rust crate takes ``&self`` (reads and
writes alike: the shard synchronises internally, see https://docs.rs/qdrant-edge), so this class
puts no lock around searches, scrolls, counts or retrieves. Measured with qdrant-edge-py 0.9.0
on 2 cores: ``query``, ``query_batch`` and ``optimize`` hold the GIL for their whole call, so
calls on one store from several Python threads are serialised by the GIL rather than run in
parallel, and a shard's own ``optimize()`` stalls every Python thread of the process for as long
as it runs (30k 384-d documents: no search completed for 77 s). :meth:`EdgeStore.optimize`
therefore builds in a child process on a copy of the shard and swaps it in: reads take the
shard object when they start, the swap replaces it and closes the old one after
``swap_grace_s`` (2 s), so reads never wait for the swap and none runs on a closed shard. Writes (``ensure_collection``, ``upsert``, ``set_served``, ``delete``,
``create_payload_index``, ``optimize``, ``drop_collection``, ``close``) take one re-entrant
*write lock*, which searches and other reads never take: it keeps the multi-step writes whole
(``set_served`` checks the ids, then writes; ``delete`` deletes, then recounts
:attr:`EdgeStore.n_empty`; ``drop_collection`` closes the shard, then removes its folder). A
read racing ``close()`` / ``drop_collection()`` gets a ``StoreError``.

One ``EdgeStore`` per shard folder: a second one (in this or another process) is refused with
a :class:`~antigravity.core.errors.StoreError` (the shard's write-ahead log is locked).
Errors raised by the shard become ``StoreError`` with one line naming the operation and the
folder; a malformed or unsupported filter is a :class:`~antigravity.core.errors.QueryError`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from antigravity.core.documents import EMPTY_FLAG
from antigravity.core.errors import AntigravityError, QueryError, StoreError
from antigravity.core.files import make_private_dir
from antigravity.stores.base import RAW, SLOTS
from antigravity.stores.filters import parse_filter
from antigravity.stores.shared import (
    check_index, check_slot, id_list, open_folder, point_id, point_rows, ranked_search, retrieved, same_dim, split_payload, vector_batch, vector_names,
)

__all__ = ["EdgeStore", "edge_filter"]

_SCHEMAS = {"keyword": "Keyword", "integer": "Integer", "float": "Float", "bool": "Bool"}
_SUPPORTED = "supported: must / should / must_not of FieldCondition with MatchValue, MatchAny or Range, and nested Filter"


def _qe() -> Any:
    """The ``qdrant_edge`` module (imported on first use: an optional dependency)."""
    try:
        import qdrant_edge
    except ImportError as exc:
        raise StoreError("EdgeStore needs the package qdrant-edge-py (pip install qdrant-edge-py==0.9.0)") from exc
    return qdrant_edge


def edge_filter(flt: Any) -> Any:
    """Convert a ``qdrant_client.models.Filter`` to a ``qdrant_edge.Filter``.

    Supported: ``must`` / ``should`` / ``must_not`` lists of ``FieldCondition`` with
    ``MatchValue``, ``MatchAny`` and/or ``Range``, and nested ``Filter``\\ s.

    Raises:
        QueryError: anything else (``min_should``, ``HasIdCondition``, ``IsEmptyCondition``,
            ``MatchText``, ``MatchExcept``, ``DatetimeRange``, geo or values-count conditions,
            ...), naming it.
    """
    if flt.min_should is not None:
        raise QueryError(f"EdgeStore does not support min_should in a filter ({_SUPPORTED})")

    def clause(part: Any) -> list | None:
        return None if part is None else [_edge_condition(c) for c in (part if isinstance(part, list) else [part])]

    return _qe().Filter(must=clause(flt.must), should=clause(flt.should), must_not=clause(flt.must_not))


def _edge_value(value: Any) -> Any:
    """A match value for ``qdrant_edge.MatchValue``. qdrant-edge-py 0.9.0 turns a Python
    ``bool`` into the integer 0/1 (so ``MatchValue(True)`` never matches a stored ``true``);
    ``numpy.bool_`` is converted to a real boolean, so bools are passed as that."""
    return np.bool_(value) if isinstance(value, bool) else value


def _edge_condition(cond: Any) -> Any:
    from qdrant_client import models

    qe = _qe()
    if isinstance(cond, models.Filter):
        return edge_filter(cond)
    if not isinstance(cond, models.FieldCondition):
        raise QueryError(f"EdgeStore does not support {type(cond).__name__} in a filter ({_SUPPORTED})")
    other = [n for n in ("geo_bounding_box", "geo_radius", "geo_polygon", "values_count", "is_empty", "is_null") if getattr(cond, n, None) is not None]
    match = rng = None
    if isinstance(cond.match, models.MatchValue):
        match = qe.MatchValue(_edge_value(cond.match.value))
    elif isinstance(cond.match, models.MatchAny):
        match = qe.MatchAny(list(cond.match.any))
    elif cond.match is not None:
        other.append(type(cond.match).__name__)
    if isinstance(cond.range, models.Range):
        rng = qe.RangeFloat(gte=cond.range.gte, gt=cond.range.gt, lte=cond.range.lte, lt=cond.range.lt)
    elif cond.range is not None:
        other.append(type(cond.range).__name__)
    if other or (match is None and rng is None):
        raise QueryError(f"EdgeStore does not support a FieldCondition on {cond.key!r} with {', '.join(other) or 'no match or range'} ({_SUPPORTED})")
    return qe.FieldCondition(cond.key, match=match, range=rng)


#: what the child process of :meth:`EdgeStore.optimize` runs: only ``qdrant_edge`` is imported
#: (not this package), the shard copy is loaded with the configuration its ``edge_config.json`` holds
_BUILD_CHILD = """
import sys
import qdrant_edge
shard = qdrant_edge.EdgeShard.load(sys.argv[1])
shard.optimize()
shard.flush()
shard.close()
"""


class _Handle:
    """The open shard and, for ``":memory:"``, the temporary folder; released by
    :meth:`EdgeStore.close` or when the store is garbage-collected."""

    def __init__(self, tmpdir: str | None) -> None:
        self.shard: Any = None
        self.tmpdir = tmpdir

    def close_shard(self) -> None:
        shard, self.shard = self.shard, None
        if shard is not None:
            with contextlib.suppress(Exception):  # closing at shutdown or twice is harmless
                shard.close()

    def release(self) -> None:
        self.close_shard()
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None


class EdgeStore:
    """A Qdrant Edge shard holding raw and served vectors of documents; implements
    :class:`antigravity.stores.base.VectorStore` (see the module doc for layout, indexing and
    threads).

    Args:
        location: ``":memory:"`` (a temporary folder, removed on :meth:`close`) or the store
            folder; each collection is the shard folder ``<location>/<collection>``.
        collection: collection name (a folder name: no ``/``).
        create: create a missing store folder (private, 0700). With ``False`` a missing folder
            is refused (:class:`StoreError`, as QdrantStore); a missing collection in an existing
            folder is, as in QdrantStore, simply absent (``dim is None``) and nothing is created.
        m: HNSW edges per node of the served slots (Qdrant default 16; 0 = no graph).
        ef_construct: HNSW build-time candidate list size (Qdrant default 100).
        hnsw_ef: HNSW search-time candidate list size; ``None`` = Qdrant's default. Qdrant uses
            at least the number of hits asked for.
        full_scan_threshold: KB of matching vectors below which a filtered search scans instead
            of walking the graph (Qdrant default 10000; 1 KB = one 256-d float32 vector).
        indexing_threshold: KB of vectors a segment needs before :meth:`optimize` builds its
            HNSW graph (Qdrant default 10000; must be > 0).
        raw_hnsw: also build a graph for the ``raw`` vector (default ``False``: raw searches are
            exact). The engine serves ``raw`` before the first adapter is trained.
        on_disk: keep every vector in memory-mapped files read on demand (Qdrant's ``on_disk``)
            instead of loading each segment's vectors into RAM (default ``False``, Qdrant's
            default). Like the HNSW options it is re-applied on open and takes effect for segments
            written from then on (the next :meth:`optimize` rewrites them all).
        optimize_in_subprocess: :meth:`optimize` builds the graphs in a child process on a copy
            of the shard and swaps it in (default ``True``: searches of this process keep
            running meanwhile); ``False`` builds in this process (holding the GIL throughout).

    The HNSW options apply when the collection is created and are re-applied when it is
    opened again (they take effect at the next :meth:`optimize`).

    Raises:
        StoreError: the folder is missing with ``create=False``, the collection folder holds no
            Antigravity shard, the shard is open elsewhere (its WAL is locked), or
            ``qdrant-edge-py`` is not installed.
    """

    remote = False

    def __init__(
        self,
        location: str = ":memory:",
        *,
        collection: str = "antigravity",
        create: bool = True,
        m: int = 16,
        ef_construct: int = 100,
        hnsw_ef: int | None = None,
        full_scan_threshold: int = 10000,
        indexing_threshold: int = 10000,
        raw_hnsw: bool = False,
        on_disk: bool = False,
        optimize_in_subprocess: bool = True,
    ) -> None:
        if not isinstance(collection, str) or not collection or "/" in collection or "\\" in collection or collection in (".", ".."):
            raise StoreError(f"invalid collection name {collection!r} for an EdgeStore (it is a folder name)")
        for name, value, low in (("m", m, 0), ("ef_construct", ef_construct, 4), ("full_scan_threshold", full_scan_threshold, 0), ("indexing_threshold", indexing_threshold, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise StoreError(f"EdgeStore {name} must be an int >= {low}, not {value!r}")
        if hnsw_ef is not None and (isinstance(hnsw_ef, bool) or not isinstance(hnsw_ef, int) or hnsw_ef < 1):
            raise StoreError(f"EdgeStore hnsw_ef must be None or an int >= 1, not {hnsw_ef!r}")
        _qe()  # fail early when the package is missing
        self.collection = collection
        self.location = location
        self.m, self.ef_construct, self.hnsw_ef = m, ef_construct, hnsw_ef
        self.full_scan_threshold, self.indexing_threshold, self.raw_hnsw = full_scan_threshold, indexing_threshold, raw_hnsw
        self.on_disk = bool(on_disk)
        self.permission_warnings: list[str] = []
        self.n_empty = 0
        self.dim: int | None = None
        self._write_lock = threading.RLock()
        self.optimize_in_subprocess = bool(optimize_in_subprocess)
        #: seconds :meth:`optimize` keeps the replaced shard open after the swap, for reads that took it just before
        self.swap_grace_s = 2.0
        tmpdir = None
        if location == ":memory:":
            tmpdir = tempfile.mkdtemp(prefix="antigravity-edge-")
            self._root = Path(tmpdir)
        else:
            self.permission_warnings = open_folder(location, create)
            self._root = Path(location).expanduser()
        self._handle = _Handle(tmpdir)
        self._finalizer = weakref.finalize(self, self._handle.release)
        self._recover_interrupted_optimize()
        if self._path.exists():
            self._open_existing()

    # -- layout and messages -------------------------------------------------------------
    @property
    def _path(self) -> Path:
        return self._root / self.collection

    @property
    def _build_dir(self) -> Path:
        """Where :meth:`optimize` builds the indexed copy of the shard."""
        return self._root / f".{self.collection}.optimizing"

    @property
    def _replaced_dir(self) -> Path:
        """Where the shard an :meth:`optimize` replaced waits to be removed."""
        return self._root / f".{self.collection}.replaced"

    def _recover_interrupted_optimize(self) -> None:
        """Finish or undo an :meth:`optimize` that a crash interrupted: a half-built copy is
        removed; a shard moved aside but not yet replaced (crash between the two renames) is
        moved back; a replaced shard left behind is removed. Nothing acknowledged is lost: the
        copy is only ever built from a flushed, closed-to-writes shard."""
        build, replaced = self._build_dir, self._replaced_dir
        if build.exists():
            shutil.rmtree(build)
        if replaced.exists():
            if self._path.exists():
                shutil.rmtree(replaced)
            else:
                os.rename(replaced, self._path)

    @property
    def meta_file(self) -> Path | None:
        """Store in a folder: the shard's ``edge_config.json`` (its vectors and index settings); else ``None``."""
        return None if self.location == ":memory:" else self._path / "edge_config.json"

    @property
    def collection_dir(self) -> Path | None:
        """Store in a folder: the shard folder ``<location>/<collection>``; else ``None``."""
        return None if self.location == ":memory:" else self._path

    def describe(self) -> str:
        """Where the collection lives, for messages."""
        if self.collection_dir is not None:
            return str(self.collection_dir)
        return f"collection {self.collection!r} in an in-memory Qdrant Edge store"

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Turn a shard error into a one-line StoreError: ``"<what> failed on <store>: ..."``
        (``what`` may hold ``{where}`` to place the store's description itself)."""
        try:
            yield
        except (AntigravityError, KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - qdrant_edge raises plain Exception, and a Rust panic on damaged files (pyo3 PanicException, a BaseException)
            head = what.format(where=repr(self.describe())) if "{where}" in what else f"{what} failed on {self.describe()}"
            msg = f"{head}: {type(exc).__name__}: {exc}".replace("\n", " ")
            if "WouldBlock" in msg:
                msg += " (the shard is open in another EdgeStore, in this or another process)"
            elif type(exc).__name__ == "PanicException":
                msg += " (the shard's files are damaged: restore the folder from a backup, or rebuild with `antigravity index CORPUS --reindex`)"
            raise StoreError(msg) from exc

    def _shard(self) -> Any:
        shard = self._handle.shard
        if shard is None:
            raise StoreError(f"{self.describe()} is closed")
        return shard

    # -- collection ------------------------------------------------------------------------
    def _config(self, dim: int) -> Any:
        qe = _qe()

        def hnsw(m: int) -> Any:
            return qe.HnswIndexConfig(m=m, ef_construct=self.ef_construct, full_scan_threshold=self.full_scan_threshold)

        def params(graph: Any) -> Any:
            return qe.EdgeVectorParams(size=int(dim), distance=qe.Distance.Cosine, hnsw_config=graph, on_disk=self.on_disk)

        vectors = {RAW: params(None if self.raw_hnsw else hnsw(0)), **{s: params(None) for s in SLOTS}}
        return qe.EdgeConfig(vectors=vectors, hnsw_config=hnsw(self.m), optimizers=qe.EdgeOptimizersConfig(indexing_threshold=self.indexing_threshold))

    def _open_existing(self) -> None:
        cfg = self._path / "edge_config.json"
        try:
            vectors = json.loads(cfg.read_text())["vectors"]
        except FileNotFoundError:
            raise StoreError(f"{self._path} exists but holds no Qdrant Edge shard (no edge_config.json): restore the folder from a backup, or rebuild with `antigravity index CORPUS --reindex`") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"cannot read {cfg}: {type(exc).__name__}: {exc}".replace("\n", " ")) from exc
        if not isinstance(vectors, dict) or RAW not in vectors:
            raise StoreError(f"collection {self.collection!r} exists but was not created by Antigravity (no 'raw' vector)")
        dim = int(vectors[RAW]["size"])
        with self._errors("cannot open Qdrant store (Qdrant Edge) at {where}"):
            self._handle.shard = _qe().EdgeShard.load(str(self._path), self._config(dim))
        self.dim = dim
        self.n_empty = self.count_empty()

    def ensure_collection(self, dim: int) -> None:
        """Create the shard for ``dim``-dimensional vectors if missing (with a bool payload
        index on the empty-document flag).

        Raises:
            StoreError: the collection exists with another dimension, or the shard cannot be created.
        """
        with self._write_lock:
            if same_dim(self.collection, self.dim, dim):
                return
            make_private_dir(self._path)
            qe = _qe()
            try:
                with self._errors("create collection"):
                    shard = qe.EdgeShard.create(str(self._path), self._config(dim))
                    self._handle.shard = shard
                    shard.update(qe.UpdateOperation.create_field_index(EMPTY_FLAG, qe.PayloadSchemaType.Bool))
            except StoreError:
                self._handle.close_shard()
                shutil.rmtree(self._path, ignore_errors=True)  # no half-made collection left behind
                raise
            self.dim = int(dim)

    def drop_collection(self) -> None:
        """Close the shard and delete its folder; :attr:`dim` becomes ``None``, :attr:`n_empty` 0."""
        with self._write_lock:
            self._handle.close_shard()
            if self._path.exists():
                shutil.rmtree(self._path)
            self.dim = None
            self.n_empty = 0

    # -- writes ------------------------------------------------------------------------------
    def _require_collection(self, what: str) -> Any:
        if self.dim is None:
            raise StoreError(f"{what}: collection {self.collection!r} does not exist yet ({self.describe()})")
        return self._shard()

    def upsert(self, doc_ids: Sequence[str], raw: np.ndarray, payloads: Sequence[dict[str, Any]], served: dict[str, np.ndarray] | None = None) -> None:
        """Insert or replace documents: ``raw`` ``(n, d) float32``, one payload each, ``served``
        ``{slot: (n, d) float32}``. A replaced document loses the slots not given.

        Raises:
            StoreError: the collection does not exist, counts differ, or the shard refuses the
                write (e.g. a wrong dimension; nothing is written then).
        """
        qe = _qe()
        points = [qe.Point(pid, vec, pl) for pid, vec, pl in point_rows(doc_ids, raw, payloads, served)]
        with self._write_lock:
            shard = self._require_collection("upsert")
            if points:
                with self._errors("upsert"):
                    shard.update(qe.UpdateOperation.upsert_points(points))

    def set_served(self, doc_ids: Sequence[str], slot: str, vectors: np.ndarray) -> None:
        """Overwrite the ``slot`` vectors (``(n, d) float32``) of stored documents.

        Raises:
            StoreError: ``slot`` is not one of :data:`SLOTS`, or an id is not stored (nothing
                is written then).
        """
        qe = _qe()
        check_slot(slot)
        ids = id_list(doc_ids, "set_served")
        pids = [point_id(d) for d in ids]
        with self._write_lock:
            shard = self._require_collection("set_served")
            if not ids:
                return
            with self._errors("set_served"):
                found = {str(r.id) for r in shard.retrieve(pids, False, False)}
            missing = [d for d, p in zip(ids, pids) if p not in found]
            if missing:
                raise StoreError(f"set_served: {len(missing)} document id(s) not stored, e.g. {missing[:5]}; nothing was written")
            points = [qe.PointVectors(p, {slot: vectors[i].tolist()}) for i, p in enumerate(pids)]
            with self._errors("set_served"):
                shard.update(qe.UpdateOperation.update_vectors(points))

    def delete(self, doc_ids: Sequence[str]) -> None:
        """Delete the documents ``doc_ids`` (unknown ids ignored) and recount :attr:`n_empty`."""
        ids = id_list(doc_ids, "delete")
        if self.dim is None or not ids:
            return
        qe = _qe()
        with self._write_lock:
            with self._errors("delete"):
                self._shard().update(qe.UpdateOperation.delete_points([point_id(d) for d in ids]))
            self.n_empty = self.count_empty()

    def create_payload_index(self, field: str, schema: str) -> None:
        """Index payload ``field`` as ``schema`` (``keyword`` / ``integer`` / ``float`` / ``bool``).

        Raises:
            QueryError: unknown schema, or an empty or reserved field.
            StoreError: the collection does not exist yet.
        """
        check_index(field, schema)
        qe = _qe()
        with self._write_lock:
            shard = self._require_collection("create_payload_index")
            with self._errors("create_payload_index"):
                shard.update(qe.UpdateOperation.create_field_index(field, getattr(qe.PayloadSchemaType, _SCHEMAS[schema])))

    def optimize(self) -> None:
        """Build the HNSW graphs (and merge segments), blocking until the shard has nothing left
        to optimise. Documents written afterwards are searched exactly until the next call.

        With ``optimize_in_subprocess`` (default), under the write lock (ingest, delete and
        slot writes wait; searches and other reads do not): flush, copy the shard folder to
        ``.<collection>.optimizing``, build there in a child Python process that imports only
        ``qdrant_edge``, then swap the folders (two renames — the open shard keeps working on
        its renamed files — and a load), point reads at the new shard, close the old one after
        ``swap_grace_s`` seconds and remove it. Reads never wait. ``qdrant_edge``'s ``optimize`` holds the
        GIL for its whole call (0.9.0), so building in this process stalls every search of the
        process for as long as the build takes (measured: ``benchmarks/search_during_optimize.py``).
        Costs: disk and page cache for a second copy of the shard while it runs. A crash at any
        point leaves the old or the new shard (see :meth:`_recover_interrupted_optimize`).

        Without it: the build runs in this process, then a flush (until a flush, qdrant-edge
        0.9.0 keeps the segments the build replaced on disk).

        Raises:
            StoreError: the build failed (the served shard is unchanged), or the swapped-in
                shard cannot be loaded.
        """
        if self.dim is None:
            return
        if not self.optimize_in_subprocess:
            with self._write_lock, self._errors("optimize"):
                self._shard().optimize()
                self._shard().flush()
            return
        with self._write_lock:
            with self._errors("optimize (flush)"):
                self._shard().flush()
            build, replaced = self._build_dir, self._replaced_dir
            shutil.rmtree(build, ignore_errors=True)
            try:
                shutil.copytree(self._path, build)
                child = subprocess.run([sys.executable, "-c", _BUILD_CHILD, str(build)], capture_output=True, text=True)
                if child.returncode != 0:
                    tail = (child.stderr.strip().splitlines() or ["no output"])[-1]
                    raise StoreError(f"optimize failed on {self.describe()}: the index build process exited with {child.returncode}: {tail}; the served shard is unchanged")
            except BaseException as exc:
                shutil.rmtree(build, ignore_errors=True)
                if isinstance(exc, OSError):
                    raise StoreError(f"optimize failed on {self.describe()}: {type(exc).__name__}: {exc}; the served shard is unchanged") from exc
                raise
            os.rename(self._path, replaced)  # the open shard keeps working on its files (Linux)
            os.rename(build, self._path)
            old = self._handle.shard
            try:
                with self._errors("cannot open the optimized shard at {where}"):
                    new = _qe().EdgeShard.load(str(self._path), self._config(self.dim))
            except StoreError:
                os.rename(self._path, build)  # put the served shard back where it was
                os.rename(replaced, self._path)
                shutil.rmtree(build, ignore_errors=True)
                raise
            self._handle.shard = new  # reads from now on use the new shard
            time.sleep(self.swap_grace_s)  # reads that took the old shard just before finish on it
            with contextlib.suppress(Exception):
                old.close()
            shutil.rmtree(replaced, ignore_errors=True)

    # -- reads -------------------------------------------------------------------------------
    def indexed_vectors_count(self) -> int:
        """Qdrant's ``indexed_vectors_count``: vectors (of all names) in HNSW-indexed segments."""
        if self.dim is None:
            return 0
        with self._errors("info"):
            return int(self._shard().info().indexed_vectors_count)

    def search(self, vectors: np.ndarray, using: str, k: int, filter: Any = None) -> list[list[tuple[str, float, dict]]]:
        """Top-``k`` cosine search for each row of ``vectors`` (``(m, d) float32``) against the
        named vector ``using``, optionally restricted by ``filter`` (see
        :mod:`antigravity.stores.filters`). Several rows go to the shard as one ``query_batch``.
        Returns per query ``[(doc_id, score, payload), ...]``, score descending then doc id.

        Raises:
            QueryError: a malformed filter, or one outside the supported subset.
            StoreError: the shard refuses the query (unknown vector name, wrong dimension).
        """
        qe = _qe()
        flt = parse_filter(filter) if filter is not None else None  # parse_filter imports qdrant_client (seconds, cold)
        edge_flt = edge_filter(flt) if flt is not None else None
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.dim is None:
            return [[] for _ in range(len(vectors))]
        params = qe.SearchParams(hnsw_ef=self.hnsw_ef) if self.hnsw_ef else None

        def fetch(rows: list[int], limit: int) -> list[list[tuple[float, dict]]]:
            reqs = [
                qe.QueryRequest(limit=limit, query=qe.Query.Nearest(vectors[i].tolist(), using=using), with_payload=True, with_vector=False, filter=edge_flt, params=params)
                for i in rows
            ]
            shard = self._shard()
            with self._errors("search"):
                results = shard.query_batch(qe.QueryBatchRequest(reqs)) if len(reqs) > 1 else [shard.query(reqs[0])]
            return [[(p.score, p.payload) for p in res] for res in results]

        return ranked_search(fetch, len(vectors), int(k), self.n_empty)

    def retrieve(self, doc_ids: Sequence[str], with_vectors: bool | Sequence[str] = False) -> dict[str, dict[str, Any]]:
        """The stored documents among ``doc_ids``: ``{doc_id: payload}``, or with ``with_vectors``
        (``True`` or vector names) ``{doc_id: {"payload": ..., "vectors": {name: (d,) float32}}}``;
        missing ids are absent (:meth:`antigravity.stores.base.VectorStore.retrieve`)."""
        ids, names = id_list(doc_ids, "retrieve"), vector_names(with_vectors)
        if self.dim is None or not ids:
            return {}
        with self._errors("retrieve"):
            recs = self._shard().retrieve([point_id(d) for d in ids], True, names or False)
        return retrieved(recs, names if with_vectors else None)

    def _scroll(self, batch_size: int, with_payload: Any, with_vector: Any) -> Iterator[list]:
        if self.dim is None:
            return
        qe = _qe()
        offset = None
        while True:
            with self._errors("scroll"):
                recs, offset = self._shard().scroll(qe.ScrollRequest(offset=offset, limit=batch_size, with_payload=with_payload, with_vector=with_vector))
            if recs:
                yield recs
            if offset is None:
                break

    def iter_payloads(self, batch_size: int = 1024) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield ``(doc_id, payload)`` for every stored document (in point-id order)."""
        for recs in self._scroll(batch_size, True, False):
            yield from (split_payload(r.payload) for r in recs)

    def iter_vectors(self, names: Sequence[str] = (RAW,), batch_size: int = 1024) -> Iterator[tuple[list[str], dict[str, np.ndarray]]]:
        """Yield ``(doc_ids, {name: (b, d) float32})`` batches over all stored documents (a
        vector a document lacks is a zero row)."""
        for recs in self._scroll(batch_size, ["doc_id"], list(names)):
            yield [str(r.payload["doc_id"]) for r in recs], vector_batch(self.dim or 0, names, [r.vector for r in recs])

    def count(self) -> int:
        """Number of stored documents (empty ones included); 0 without a collection."""
        if self.dim is None:
            return 0
        with self._errors("count"):
            return int(self._shard().count(_qe().CountRequest(exact=True)))

    def count_empty(self) -> int:
        """Number of stored empty documents (payload flag ``_ag_empty``); 0 without a collection."""
        if self.dim is None:
            return 0
        qe = _qe()
        flt = qe.Filter(must=[qe.FieldCondition(EMPTY_FLAG, match=qe.MatchValue(_edge_value(True)))])
        with self._errors("count"):
            return int(self._shard().count(qe.CountRequest(exact=True, filter=flt)))

    def close(self) -> None:
        """Flush and close the shard (releasing its lock); an in-memory store's folder is
        removed. Closing twice is harmless."""
        with self._write_lock:
            self._finalizer()
