"""Vector store on Qdrant Edge (``qdrant-edge-py``, module ``qdrant_edge``): Qdrant's engine
embedded in the process as one shard per collection, no server and no SQLite.

Layout: one shard per vector name (see :class:`EdgeStore`): ``<location>/<collection>/``
holds ``raw`` and the payloads, ``<location>/<collection>.served_a/`` and ``.served_b/`` one
served slot each (each shard folder has ``edge_config.json``, ``wal/``, ``segments/``);
``location=":memory:"`` puts them in a temporary folder that :meth:`EdgeStore.close` removes.
Points, payloads and ids are laid out as in :class:`~antigravity.stores.qdrant.QdrantStore`
(shared helpers in :mod:`antigravity.stores.shared`): ``uuid5`` point ids
(:func:`~antigravity.stores.shared.point_id`), the document id in the payload as ``doc_id``,
empty documents flagged ``_ag_empty`` and never returned by :meth:`EdgeStore.search` — which,
like QdrantStore, over-fetches ``k + n_empty + 1`` hits and drops the flagged ones
(:func:`~antigravity.stores.shared.ranked_search`) rather than sending a ``must_not`` filter:
measured at 20k points, that filter made a single query ~6 ms instead of ~0.7 ms exact /
~0.35 ms HNSW.

Vectors (all ``d``-dimensional, cosine; Qdrant stores them normalised):

* ``raw``: the student's embedding. With ``raw_hnsw=False`` (default) it gets no HNSW graph
  (``m=0``), so a search on it is always exact; ``raw_hnsw=True`` indexes it like the slots.
* ``served_a`` / ``served_b``: HNSW with Qdrant's parameters ``m`` (edges per node, default
  16) and ``ef_construct`` (build-time candidates, default 100); ``hnsw_ef`` (search-time
  candidates, default ``None`` = Qdrant's choice) is passed with every search. Source:
  https://qdrant.tech/documentation/concepts/indexing/#vector-index and
  https://qdrant.tech/documentation/guides/optimize/.

Indexing: a shard has no background optimizer. Points are searched exactly (brute force)
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
``swap_grace_s`` (2 s), so reads never wait for the swap and none runs on a closed shard. Writes (``ensure_collection``, ``upsert``, ``set_served``, ``clear_served``, ``delete``,
``create_payload_index``, ``optimize``, ``drop_collection``, ``close``) take one re-entrant
*write lock*, which searches and other reads never take: it keeps the multi-step writes whole
(``set_served`` checks the ids, then writes; ``delete`` deletes from every shard, then
recounts :attr:`EdgeStore.n_empty`; ``drop_collection`` closes the shards, then removes their
folders). A search reads one shard; a read that combines shards (``retrieve`` or
``iter_vectors`` with raw and slot vectors) is not a snapshot across them while writes run. A
read racing ``close()`` / ``drop_collection()`` gets a ``StoreError``.

One ``EdgeStore`` per shard folder: a second one (in this or another process) is refused with
a :class:`~antigravity.core.errors.StoreError` (the shard's write-ahead log is locked).
Errors raised by the shard become ``StoreError`` with one line naming the operation and the
folder; a malformed or unsupported filter is a :class:`~antigravity.core.errors.QueryError`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator, Sequence

import numpy as np

from antigravity.core.documents import EMPTY_FLAG
from antigravity.core.errors import QueryError, StoreError
from antigravity.core.files import make_private_dir
from antigravity.stores.base import RAW, SLOTS
from antigravity.stores.filters import parse_filter
from antigravity.stores.shared import (
    backend_errors, check_dim, check_index, check_missing, check_rows, check_search, check_slot, check_upsert, id_list, open_folder, payload_rows, point_id,
    ranked_search,
    require_collection, retrieved, same_dim, split_payload, vector_batch, vector_names,
)

logger = logging.getLogger("antigravity.store")

__all__ = ["AUTO_EF_FALLBACK", "CALIBRATION_SAMPLE", "EF_CANDIDATES", "SHARDS", "EdgeStore", "edge_filter"]

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
#: (not this package), the shard copy is loaded with the configuration its ``edge_config.json`` holds.
#: With a calibration request (argv[2], JSON) on a shard no graph covers yet, ``sample`` points are
#: held out of the build (deleted, then written back after it) and searched exactly and through
#: the new graph at each candidate ``hnsw_ef``; the sweep is printed as one ``CALIBRATION`` line.
_BUILD_CHILD = """
import json
import sys
import qdrant_edge as qe
shard = qe.EdgeShard.load(sys.argv[1])
cal = json.loads(sys.argv[2]) if len(sys.argv) > 2 else None
held = []
if cal and shard.info().indexed_vectors_count == 0:
    name, k = cal["name"], cal["k"]
    recs, _ = shard.scroll(qe.ScrollRequest(limit=cal["sample"], with_payload=True, with_vector=True))
    held = [r for r in recs if isinstance(r.vector, dict) and r.vector.get(name) is not None]
    if len(held) < cal["sample"] // 2 or shard.info().points_count < 20 * cal["sample"]:
        held = []
    if held:
        shard.update(qe.UpdateOperation.delete_points([r.id for r in held]))
shard.optimize()
if held and shard.info().indexed_vectors_count > 0:
    def top(params):
        reqs = [qe.QueryRequest(limit=k, query=qe.Query.Nearest(r.vector[name], using=name), with_payload=False, with_vector=False, params=params) for r in held]
        return [[str(p.id) for p in res] for res in shard.query_batch(qe.QueryBatchRequest(reqs))]
    truth = top(qe.SearchParams(exact=True))
    sweep = {}
    for ef in cal["candidates"]:
        found = top(qe.SearchParams(hnsw_ef=ef))
        sweep[ef] = sum(len(set(f) & set(t)) / max(1, len(t)) for f, t in zip(found, truth)) / len(held)
        if sweep[ef] >= cal["target"]:
            break
    print("CALIBRATION " + json.dumps({"sweep": sweep, "sample": len(held), "points": shard.info().points_count + len(held)}), flush=True)
if held:
    shard.update(qe.UpdateOperation.upsert_points([qe.Point(r.id, r.vector, r.payload) for r in held]))
shard.flush()
shard.close()
"""

#: the shards of a collection, one per vector name: ``raw`` (with every payload) first
SHARDS = (RAW, *SLOTS)

#: ``hnsw_ef`` values the ``hnsw_ef="auto"`` measurement tries, smallest first. It starts at
#: :data:`AUTO_EF_FALLBACK` (the fixed default before ``"auto"``): the measurement only ever
#: raises the beam, so a collection that met the target before keeps its recall (e.g. NPL's
#: 11k documents, above ``store.index_threshold``, keep the beam the benchmarks ran with)
EF_CANDIDATES = (256, 512, 1024, 2048)

#: points held out of a graph build to measure its recall (``hnsw_ef="auto"``); a shard needs
#: 20 × as many points to be measured
CALIBRATION_SAMPLE = 100

#: ``hnsw_ef="auto"`` before a shard is calibrated: recall@10 0.998 at 100k and 0.963 at 1M
#: structured 384-d vectors (docs/performance.md)
AUTO_EF_FALLBACK = 256


def _json_bytes(value: Any) -> np.ndarray:
    """``value`` (a list of ids, or JSON text already) as the UTF-8 bytes of its JSON text, for
    the journal: NumPy's fixed-width ``str`` arrays drop trailing NULs (``"x\\x00"`` would be
    replayed as ``"x"``) and pad every entry to the longest (one long id made a journal of
    ``n`` × its size)."""
    text = value if isinstance(value, str) else json.dumps(value)  # ensure_ascii: NUL and lone surrogates are escaped
    return np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)


def _json_list(arr: np.ndarray, what: str, kind: type) -> list:
    """The list a :func:`_json_bytes` array holds. Raises ValueError unless it is a list of ``kind``."""
    value = json.loads(arr.tobytes().decode("utf-8", "surrogatepass"))
    if not isinstance(value, list) or not all(isinstance(v, kind) for v in value):
        raise ValueError(f"the journal's {what} are not a JSON list of {kind.__name__}")
    return value


class _Handle:
    """The open shards (``{name: EdgeShard}``) and, for ``":memory:"``, the temporary folder;
    released by :meth:`EdgeStore.close` or when the store is garbage-collected."""

    def __init__(self, tmpdir: str | None) -> None:
        self.shards: dict[str, Any] = {}
        self.open = False
        self.tmpdir = tmpdir

    def close_shard(self, name: str | None = None) -> None:
        """Close one shard (``name``) or all of them (``None``: the store is then closed)."""
        if name is None:
            self.open = False
        for n in list(self.shards) if name is None else [name]:
            shard = self.shards.pop(n, None)
            if shard is not None:
                with contextlib.suppress(Exception):  # closing at shutdown or twice is harmless
                    shard.close()

    def release(self) -> None:
        self.close_shard()
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None


class EdgeStore:
    """Qdrant Edge shards holding the raw and served vectors of documents; implements
    :class:`antigravity.stores.base.VectorStore`.

    Layout: one shard per vector name. ``<location>/<collection>/`` holds ``raw`` and every
    payload; ``<location>/<collection>.served_a/`` and ``.served_b/`` hold one served slot each
    (with a copy of the payload, so filters and results work on them), created when the slot
    is first written and removed by :meth:`clear_served`. A shard holds dense storage for every
    vector name it declares, written or not, and moves a whole point when one of its vectors
    is updated; one shard per name means a promotion writes one vector per document, and a
    store that never promoted holds one vector per document (measured at 1M documents:
    docs/performance.md). A write that touches several shards (an upsert or delete while a
    slot shard exists) is first written to a journal file (``.<collection>.journal.npz``,
    renamed into place when complete) and replayed on open when a crash cut it short, so the
    shards never disagree about a document. See the module doc for indexing and threads.

    Args:
        location: ``":memory:"`` (a temporary folder, removed on :meth:`close`) or the store
            folder.
        collection: collection name (a folder name: no ``/``).
        create: create a missing store folder (private, 0700). With ``False`` a missing folder
            is refused (:class:`StoreError`, as QdrantStore); a missing collection in an existing
            folder is, as in QdrantStore, simply absent (``dim is None``) and nothing is created.
        m: HNSW edges per node of the served slots (Qdrant default 16; 0 = no graph).
        ef_construct: HNSW build-time candidate list size (Qdrant default 100).
        hnsw_ef: HNSW search-time candidate list size; ``None`` = Qdrant's default; ``"auto"``
            = the smallest of :data:`EF_CANDIDATES` whose recall@10, measured on points held out
            of the graph build (:meth:`_keep_calibration`), reaches ``target_recall``; measured
            by :meth:`optimize` (in its build child) on a shard no graph covered yet, kept beside
            the shard; :data:`AUTO_EF_FALLBACK` until a shard has been measured. Qdrant uses at
            least the number of hits asked for.
        target_recall: recall@10 against exact search that ``hnsw_ef="auto"`` aims for
            (default 0.99).
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
            of each shard and swaps it in (default ``True``: searches of this process keep
            running meanwhile); ``False`` builds in this process (holding the GIL throughout).
        migrate_hint: appended to the command named when the folder holds the single-shard
            layout of earlier versions (e.g. ``" --data-dir DIR"``).

    The HNSW options apply when a shard is created and are re-applied when it is opened again
    (they take effect at the next :meth:`optimize`).

    Raises:
        StoreError: the folder is missing with ``create=False``, the collection folder holds no
            Antigravity shard or the single-shard layout of earlier versions (names
            ``antigravity migrate``), a shard is open elsewhere (its WAL is locked), a journal
            cannot be replayed, or ``qdrant-edge-py`` is not installed.
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
        hnsw_ef: int | str | None = None,
        target_recall: float = 0.99,
        full_scan_threshold: int = 10000,
        indexing_threshold: int = 10000,
        raw_hnsw: bool = False,
        on_disk: bool = False,
        optimize_in_subprocess: bool = True,
        migrate_hint: str = "",
    ) -> None:
        if not isinstance(collection, str) or not collection or "/" in collection or "\\" in collection or collection in (".", ".."):
            raise StoreError(f"invalid collection name {collection!r} for an EdgeStore (it is a folder name)")
        for name, value, low in (("m", m, 0), ("ef_construct", ef_construct, 4), ("full_scan_threshold", full_scan_threshold, 0), ("indexing_threshold", indexing_threshold, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise StoreError(f"EdgeStore {name} must be an int >= {low}, not {value!r}")
        if hnsw_ef is not None and hnsw_ef != "auto" and (isinstance(hnsw_ef, bool) or not isinstance(hnsw_ef, int) or hnsw_ef < 1):
            raise StoreError(f"EdgeStore hnsw_ef must be None, 'auto' or an int >= 1, not {hnsw_ef!r}")
        if isinstance(target_recall, bool) or not isinstance(target_recall, (int, float)) or not 0.0 < target_recall <= 1.0:
            raise StoreError(f"EdgeStore target_recall must be a number in (0, 1], not {target_recall!r}")
        _qe()  # fail early when the package is missing
        self.collection = collection
        self.location = location
        self.m, self.ef_construct, self.hnsw_ef, self.target_recall = m, ef_construct, hnsw_ef, float(target_recall)
        #: ``hnsw_ef="auto"``: per shard, what :meth:`_keep_calibration` kept
        self.calibration: dict[str, dict[str, Any]] = {}
        self.full_scan_threshold, self.indexing_threshold, self.raw_hnsw = full_scan_threshold, indexing_threshold, raw_hnsw
        self.on_disk = bool(on_disk)
        self.migrate_hint = migrate_hint
        self.permission_warnings: list[str] = []
        self.n_empty = 0
        self.dim: int | None = None
        self._write_lock = threading.RLock()
        self.optimize_in_subprocess = bool(optimize_in_subprocess)
        #: seconds :meth:`optimize` keeps the replaced shard open after the swap, for reads that took it just before
        self.swap_grace_s = 2.0
        #: shards written since this process last optimised them (after open: those not fully indexed)
        self._unoptimized: set[str] = set()
        tmpdir = None
        if location == ":memory:":
            tmpdir = tempfile.mkdtemp(prefix="antigravity-edge-")
            self._root = Path(tmpdir)
        else:
            self.permission_warnings = open_folder(location, create)
            self._root = Path(location).expanduser()
        self._handle = _Handle(tmpdir)
        self._finalizer = weakref.finalize(self, self._handle.release)
        for name in SHARDS:
            self._recover_interrupted(name)
        if self._path.exists():
            self._open_existing()

    # -- layout and messages -------------------------------------------------------------
    def _folder(self, name: str) -> Path:
        """The shard folder of vector ``name``: ``<collection>`` for raw, ``<collection>.<slot>`` for a slot."""
        return self._root / (self.collection if name == RAW else f"{self.collection}.{name}")

    def _aside(self, name: str, what: str) -> Path:
        """A hidden folder beside shard ``name``: ``optimizing`` (an index build), ``replaced``
        (the shard an optimize replaced), ``creating`` (a slot shard being made), ``dropping``
        (a slot shard being removed)."""
        return self._root / f".{self._folder(name).name}.{what}"

    @property
    def _path(self) -> Path:
        return self._folder(RAW)

    @property
    def _journal(self) -> Path:
        return self._root / f".{self.collection}.journal.npz"

    def _recover_interrupted(self, name: str) -> None:
        """Finish or undo a folder operation on shard ``name`` that a crash interrupted: a
        half-built optimize copy or half-created slot shard is removed; a shard moved aside by
        an optimize but not yet replaced (crash between the two renames) is moved back; a
        replaced or dropped shard left behind is removed. Nothing acknowledged is lost: an
        optimize copy is only ever built from a flushed, closed-to-writes shard."""
        folder = self._folder(name)
        for what in ("optimizing", "creating", "dropping"):
            shutil.rmtree(self._aside(name, what), ignore_errors=True)
        replaced = self._aside(name, "replaced")
        if replaced.exists():
            if folder.exists():
                shutil.rmtree(replaced)
            else:
                os.rename(replaced, folder)

    @property
    def meta_file(self) -> Path | None:
        """Store in a folder: the raw shard's ``edge_config.json`` (its vectors and index settings); else ``None``."""
        return None if self.location == ":memory:" else self._path / "edge_config.json"

    @property
    def collection_dir(self) -> Path | None:
        """Store in a folder: the raw shard's folder ``<location>/<collection>`` (the slot shards
        are ``<collection>.served_a`` / ``.served_b`` beside it); else ``None``."""
        return None if self.location == ":memory:" else self._path

    def describe(self) -> str:
        """Where the collection lives, for messages."""
        if self.collection_dir is not None:
            return str(self.collection_dir)
        return f"collection {self.collection!r} in an in-memory Qdrant Edge store"

    def _errors(self, what: str) -> contextlib.AbstractContextManager:
        """Turn a shard error into a one-line StoreError (:func:`~antigravity.stores.shared.backend_errors`):
        ``"<what> failed on <store>: ..."`` (``what`` may hold ``{where}`` to place the store's
        description itself), with a hint for a locked shard or damaged files. Catches
        ``BaseException``: qdrant_edge raises plain Exception, and a Rust panic on damaged files
        (pyo3 PanicException, a BaseException)."""

        def head() -> str:
            return what.format(where=repr(self.describe())) if "{where}" in what else f"{what} failed on {self.describe()}"

        def hint(msg: str, exc: BaseException) -> str:
            if "WouldBlock" in msg:
                return msg + " (the shard is open in another EdgeStore, in this or another process)"
            if type(exc).__name__ == "PanicException":
                return msg + " (the shard's files are damaged: restore the folder from a backup, or rebuild with `antigravity index CORPUS --reindex`)"
            return msg

        return backend_errors(head, BaseException, hint)

    def _shard(self, name: str = RAW) -> Any:
        """The open shard of vector ``name`` (``None`` for a slot that has no shard).

        Raises:
            StoreError: the store is closed.
        """
        if not self._handle.open:
            raise StoreError(f"{self.describe()} is closed")
        shard = self._handle.shards.get(name)
        if shard is None and name == RAW:
            raise StoreError(f"{self.describe()} is closed")
        return shard

    # -- collection ------------------------------------------------------------------------
    def _config(self, dim: int, name: str) -> Any:
        """The ``EdgeConfig`` of the shard of vector ``name``: that one vector, cosine, with
        this store's HNSW options (``raw`` without a graph unless ``raw_hnsw``)."""
        qe = _qe()

        def hnsw(m: int) -> Any:
            return qe.HnswIndexConfig(m=m, ef_construct=self.ef_construct, full_scan_threshold=self.full_scan_threshold)

        graph = hnsw(0) if name == RAW and not self.raw_hnsw else None
        vectors = {name: qe.EdgeVectorParams(size=int(dim), distance=qe.Distance.Cosine, hnsw_config=graph, on_disk=self.on_disk)}
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
        if set(vectors) & set(SLOTS):
            raise StoreError(
                f"{self._path} holds the single-shard layout of earlier Antigravity versions (vectors {sorted(vectors)} in one shard): "
                f"migrate it with `antigravity migrate{self.migrate_hint}` (vectors, payloads, adapters and the active version are kept)"
            )
        dim = int(vectors[RAW]["size"])
        self._handle.open = True
        try:
            for name in SHARDS:
                if name == RAW or self._folder(name).exists():
                    with self._errors("cannot open Qdrant store (Qdrant Edge) at {where}" if name == RAW else f"cannot open the {name} shard of Qdrant store {{where}}"):
                        self._handle.shards[name] = _qe().EdgeShard.load(str(self._folder(name)), self._config(dim, name))
            self.dim = dim
            self._load_calibrations()
            self._replay_journal()
            self.n_empty = self.count_empty()
        except BaseException:
            self._handle.close_shard()
            self.dim = None
            raise
        self._unoptimized = {n for n, shard in self._handle.shards.items() if not self._fully_indexed(n, shard)}

    def _fully_indexed(self, name: str, shard: Any) -> bool:
        """Whether every point of shard ``name`` is in an HNSW-indexed segment (so an
        :meth:`optimize` right after open has nothing to build there)."""
        if self.m == 0 or (name == RAW and not self.raw_hnsw):
            return False
        with self._errors("info"):
            info = shard.info()
        return int(info.indexed_vectors_count) >= int(info.points_count)

    def ensure_collection(self, dim: int) -> None:
        """Create the raw shard for ``dim``-dimensional vectors if missing (with a bool payload
        index on the empty-document flag); slot shards are created when first written.

        Raises:
            StoreError: ``dim`` is not an integer in 1..65536, the collection exists with another
                dimension, or the shard cannot be created.
        """
        dim = check_dim(dim)
        with self._write_lock:
            if same_dim(self.collection, self.dim, dim):
                return
            make_private_dir(self._path)
            qe = _qe()
            try:
                with self._errors("create collection"):
                    shard = qe.EdgeShard.create(str(self._path), self._config(dim, RAW))
                    self._handle.shards[RAW] = shard
                    self._handle.open = True
                    shard.update(qe.UpdateOperation.create_field_index(EMPTY_FLAG, qe.PayloadSchemaType.Bool))
            except StoreError:
                self._handle.close_shard()
                shutil.rmtree(self._path, ignore_errors=True)  # no half-made collection left behind
                raise
            self.dim = int(dim)

    def _slot_shard(self, slot: str) -> Any:
        """The shard of ``slot``, created (with the raw shard's payload indexes) when missing:
        built in ``.<folder>.creating`` and renamed into place, so a crash never leaves a
        half-made shard under the slot's name. Call under the write lock."""
        shard = self._handle.shards.get(slot)
        if shard is not None:
            return shard
        qe = _qe()
        assert self.dim is not None
        tmp, folder = self._aside(slot, "creating"), self._folder(slot)
        shutil.rmtree(tmp, ignore_errors=True)
        make_private_dir(tmp)
        with self._errors(f"create the {slot} shard"):
            new = qe.EdgeShard.create(str(tmp), self._config(self.dim, slot))
            for field, info in self._shard(RAW).info().payload_schema.items():
                new.update(qe.UpdateOperation.create_field_index(field, info.data_type))
            new.flush()
            new.close()
            os.rename(tmp, folder)
            self._handle.shards[slot] = qe.EdgeShard.load(str(folder), self._config(self.dim, slot))
        return self._handle.shards[slot]

    def drop_collection(self) -> None:
        """Close the shards and delete their folders; :attr:`dim` becomes ``None``, :attr:`n_empty` 0."""
        with self._write_lock:
            self._handle.close_shard()
            for name in SHARDS:
                if self._folder(name).exists():
                    shutil.rmtree(self._folder(name))
                self._aside(name, "search.json").unlink(missing_ok=True)
            self.calibration.clear()
            self._journal.unlink(missing_ok=True)
            self.dim = None
            self.n_empty = 0

    # -- writes ------------------------------------------------------------------------------
    def _require_collection(self, what: str) -> Any:
        require_collection(what, self.collection, self.dim, self.describe())
        return self._shard()

    def upsert(self, doc_ids: Sequence[str], raw: np.ndarray, payloads: Sequence[dict[str, Any]], served: dict[str, np.ndarray] | None = None) -> None:
        """Insert or replace documents: ``raw`` ``(n, d) float32``, one payload each, ``served``
        ``{slot: (n, d) float32}``. A replaced document loses the slots not given. Journaled
        when it touches more than the raw shard (see the class doc).

        Raises:
            StoreError: the collection does not exist, counts or shapes differ, a payload is not
                a JSON object (names the document), or the shard refuses the write.
            DocumentError: a raw or served vector holds NaN or inf (names the documents).
            Nothing is written when any of these is raised.
        """
        served = dict(served or {})
        ids = id_list(doc_ids, "upsert")
        check_upsert(ids, raw, payloads, served)
        with self._write_lock:
            self._require_collection("upsert")
            if not ids:
                return
            raw_arr = check_rows("upsert: raw", raw, ids, self.dim, self.collection)
            served = {slot: check_rows(f"upsert: served[{slot!r}]", mat, ids, self.dim, self.collection) for slot, mat in served.items()}
            payload_list, text = payload_rows("upsert", ids, payloads)
            others = [s for s in SLOTS if s not in served and s in self._handle.shards]
            if served or others:
                arrays = {"ids_json": _json_bytes(ids), "raw": raw_arr, "payloads_json": _json_bytes(text), "clear": np.array(others, dtype=str)}
                self._write_journal("upsert", arrays | {f"served.{s}": m for s, m in served.items()})
            self._apply_upsert(ids, raw_arr, payload_list, served, others)
            self._journal.unlink(missing_ok=True)

    def _apply_upsert(self, ids: list[str], raw: np.ndarray, payloads: list[dict[str, Any]], served: dict[str, np.ndarray], clear: Sequence[str]) -> None:
        """Write an upsert to the shards: raw and payload, each given slot (with the payload),
        and delete the documents from the slot shards in ``clear``. Idempotent (a journal replay)."""
        qe = _qe()
        pids = [point_id(d) for d in ids]
        with self._errors("upsert"):
            self._shard(RAW).update(qe.UpdateOperation.upsert_points([qe.Point(p, {RAW: raw[i].tolist()}, payloads[i]) for i, p in enumerate(pids)]))
            self._unoptimized.add(RAW)
            for slot, mat in served.items():
                self._slot_shard(slot).update(qe.UpdateOperation.upsert_points([qe.Point(p, {slot: mat[i].tolist()}, payloads[i]) for i, p in enumerate(pids)]))
                self._unoptimized.add(slot)
            for slot in clear:
                shard = self._handle.shards.get(slot)
                if shard is not None:
                    shard.update(qe.UpdateOperation.delete_points(pids))

    def _write_journal(self, op: str, arrays: dict[str, np.ndarray]) -> None:
        """Write a multi-shard operation to the journal: a temporary file renamed into place,
        so a journal on disk is always complete."""
        tmp = self._journal.with_name(self._journal.name + ".tmp")
        with self._errors("journal write"), open(tmp, "wb") as f:
            np.savez(f, op=np.array(op), **arrays)
        os.replace(tmp, self._journal)

    def _replay_journal(self) -> None:
        """Re-apply the multi-shard operation a crash cut short (upserts and deletes are
        idempotent), then remove the journal; an incomplete journal (never renamed into place:
        the operation had not started) is removed. Ids and payloads are read from the UTF-8
        JSON bytes ``ids_json`` / ``payloads_json``; a journal of earlier versions (fixed-width
        ``str`` arrays ``ids`` / ``payloads``) is read as it was written.

        Raises:
            StoreError: the journal cannot be read (names the file).
        """
        self._journal.with_name(self._journal.name + ".tmp").unlink(missing_ok=True)
        if not self._journal.exists():
            return
        try:
            with np.load(self._journal, allow_pickle=False) as z:
                op = str(z["op"])
                if "ids_json" in z.files:  # ids and payloads as UTF-8 JSON bytes
                    ids = _json_list(z["ids_json"], "ids", str)
                else:  # the journal of earlier versions: fixed-width str arrays
                    ids = [str(x) for x in z["ids"]]
                if op == "upsert":
                    served = {k.split(".", 1)[1]: z[k] for k in z.files if k.startswith("served.")}
                    payloads = _json_list(z["payloads_json"], "payloads", dict) if "payloads_json" in z.files else json.loads(str(z["payloads"]))
                    args = (ids, z["raw"], payloads, served, [str(x) for x in z["clear"]])
                elif op != "delete":
                    raise ValueError(f"unknown operation {op!r}")
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise StoreError(
                f"cannot replay {self._journal} (an interrupted multi-shard write): {type(exc).__name__}: {exc}; "
                f"restore the store folder from a backup, or rebuild with `antigravity index CORPUS --reindex`".replace("\n", " ")
            ) from exc
        with self._write_lock:
            if op == "upsert":
                self._apply_upsert(*args)
            else:
                self._apply_delete(ids)
            self._journal.unlink()

    def set_served(self, doc_ids: Sequence[str], slot: str, vectors: np.ndarray) -> None:
        """Overwrite the ``slot`` vectors (``(n, d) float32``) of stored documents (their slot
        shard gets a copy of the payload, for filters).

        Raises:
            StoreError: ``slot`` is not one of :data:`SLOTS`, ``vectors`` is not ``(n, d)``, or
                an id is not stored (names it).
            DocumentError: a vector holds NaN or inf (names the documents).
            Nothing is written when any of these is raised.
        """
        qe = _qe()
        check_slot(slot)
        ids = id_list(doc_ids, "set_served")
        pids = [point_id(d) for d in ids]
        with self._write_lock:
            shard = self._require_collection("set_served")
            if not ids:
                return
            vectors = check_rows(f"set_served: vectors for {slot!r}", vectors, ids, self.dim, self.collection)
            with self._errors("set_served"):
                found = {str(r.id): r.payload for r in shard.retrieve(pids, True, False)}
            check_missing("set_served", ids, {d for d, p in zip(ids, pids) if p in found})
            points = [qe.Point(p, {slot: vectors[i].tolist()}, found[p]) for i, p in enumerate(pids)]
            with self._errors("set_served"):
                self._slot_shard(slot).update(qe.UpdateOperation.upsert_points(points))
            self._unoptimized.add(slot)

    def clear_served(self, slot: str) -> None:
        """Remove every ``slot`` vector (the slot's shard: closed, moved aside, deleted). A
        promotion calls it before writing the whole slot, so the write appends to a fresh shard
        instead of moving every point of an indexed one. Reads must not be using the slot.

        Raises:
            StoreError: ``slot`` is not one of :data:`SLOTS`.
        """
        check_slot(slot)
        with self._write_lock:
            self._handle.close_shard(slot)
            self._unoptimized.discard(slot)
            self.calibration.pop(slot, None)
            self._aside(slot, "search.json").unlink(missing_ok=True)
            folder, dropping = self._folder(slot), self._aside(slot, "dropping")
            if folder.exists():
                shutil.rmtree(dropping, ignore_errors=True)
                os.rename(folder, dropping)  # a crash now leaves no half-deleted shard under the slot's name
                shutil.rmtree(dropping, ignore_errors=True)

    def delete(self, doc_ids: Sequence[str]) -> None:
        """Delete the documents ``doc_ids`` (unknown ids ignored) from every shard and recount
        :attr:`n_empty`. Journaled when a slot shard exists."""
        ids = id_list(doc_ids, "delete")
        if self.dim is None or not ids:
            return
        with self._write_lock:
            self._shard()
            if any(s in self._handle.shards for s in SLOTS):
                self._write_journal("delete", {"ids_json": _json_bytes(ids)})
            self._apply_delete(ids)
            self._journal.unlink(missing_ok=True)
            self.n_empty = self.count_empty()

    def _apply_delete(self, ids: list[str]) -> None:
        qe = _qe()
        pids = [point_id(d) for d in ids]
        with self._errors("delete"):
            for name, shard in list(self._handle.shards.items()):
                shard.update(qe.UpdateOperation.delete_points(pids))
                self._unoptimized.add(name)

    def create_payload_index(self, field: str, schema: str) -> None:
        """Index payload ``field`` as ``schema`` (``keyword`` / ``integer`` / ``float`` / ``bool``)
        in every shard (slot shards made later copy the raw shard's indexes).

        Raises:
            QueryError: unknown schema, or an empty or reserved field.
            StoreError: the collection does not exist yet.
        """
        check_index(field, schema)
        qe = _qe()
        with self._write_lock:
            self._require_collection("create_payload_index")
            with self._errors("create_payload_index"):
                for shard in list(self._handle.shards.values()):
                    shard.update(qe.UpdateOperation.create_field_index(field, getattr(qe.PayloadSchemaType, _SCHEMAS[schema])))

    def optimize(self) -> None:
        """Build the HNSW graphs (and merge segments) of every shard written since this process
        last optimised it (after open: every shard with points outside an HNSW graph), blocking
        until nothing is left to optimise.
        Documents written afterwards are searched exactly until the next call.

        With ``optimize_in_subprocess`` (default), for each shard under the write lock (ingest,
        delete and slot writes wait; searches and other reads do not): flush, copy the shard
        folder to ``.<folder>.optimizing``, build there in a child Python process that imports
        only ``qdrant_edge``, then swap the folders (two renames — the open shard keeps working
        on its renamed files — and a load), point reads at the new shard, close the old one
        after ``swap_grace_s`` seconds and remove it. Reads never wait. ``qdrant_edge``'s
        ``optimize`` holds the GIL for its whole call (0.9.0), so building in this process
        stalls every search of the process for as long as the build takes (measured:
        ``benchmarks/search_during_optimize.py``). Costs: disk and page cache for a second copy
        of the shard while it runs. A crash at any point leaves the old or the new shard (see
        :meth:`_recover_interrupted`).

        Without it: the build runs in this process, then a flush (until a flush, qdrant-edge
        0.9.0 keeps the segments the build replaced on disk).

        Raises:
            StoreError: a build failed (that served shard is unchanged), or a swapped-in shard
                cannot be loaded.
        """
        if self.dim is None:
            return
        with self._write_lock:
            for name in [n for n in SHARDS if n in self._handle.shards and n in self._unoptimized]:
                self._optimize_shard(name)
                self._unoptimized.discard(name)

    def _optimize_shard(self, name: str) -> None:
        shard = self._shard(name)
        if not self.optimize_in_subprocess:
            with self._errors("optimize"):
                shard.optimize()
                shard.flush()
            return
        with self._errors("optimize (flush)"):
            shard.flush()
        folder, build, replaced = self._folder(name), self._aside(name, "optimizing"), self._aside(name, "replaced")
        shutil.rmtree(build, ignore_errors=True)
        try:
            shutil.copytree(folder, build)
            cal = [json.dumps({"name": name, "sample": CALIBRATION_SAMPLE, "k": 10, "candidates": list(EF_CANDIDATES), "target": self.target_recall})] if self.hnsw_ef == "auto" else []
            t0 = time.perf_counter()
            child = subprocess.run([sys.executable, "-c", _BUILD_CHILD, str(build), *cal], capture_output=True, text=True)
            if child.returncode != 0:
                tail = (child.stderr.strip().splitlines() or ["no output"])[-1]
                raise StoreError(f"optimize failed on {self.describe()} ({name} shard): the index build process exited with {child.returncode}: {tail}; the served shard is unchanged")
        except BaseException as exc:
            shutil.rmtree(build, ignore_errors=True)
            if isinstance(exc, OSError):
                raise StoreError(f"optimize failed on {self.describe()} ({name} shard): {type(exc).__name__}: {exc}; the served shard is unchanged") from exc
            raise
        os.rename(folder, replaced)  # the open shard keeps working on its files (Linux)
        os.rename(build, folder)
        assert self.dim is not None
        try:
            with self._errors("cannot open the optimized shard at {where}"):
                new = _qe().EdgeShard.load(str(folder), self._config(self.dim, name))
        except StoreError:
            os.rename(folder, build)  # put the served shard back where it was
            os.rename(replaced, folder)
            shutil.rmtree(build, ignore_errors=True)
            raise
        self._handle.shards[name] = new  # reads from now on use the new shard
        line = next((ln for ln in child.stdout.splitlines() if ln.startswith("CALIBRATION ")), None)
        if line is not None:
            self._keep_calibration(name, json.loads(line.split(" ", 1)[1]), time.perf_counter() - t0)
        time.sleep(self.swap_grace_s)  # reads that took the old shard just before finish on it
        with contextlib.suppress(Exception):
            shard.close()
        shutil.rmtree(replaced, ignore_errors=True)

    # -- search beam (hnsw_ef="auto") ----------------------------------------------------------
    def ef_for(self, using: str) -> int | None:
        """The ``hnsw_ef`` a search of vector ``using`` is sent with: the fixed setting, or with
        ``"auto"`` the shard's calibrated value (:data:`AUTO_EF_FALLBACK` before it has one)."""
        if self.hnsw_ef != "auto":
            return self.hnsw_ef  # type: ignore[return-value]
        return int(self.calibration.get(using, {}).get("hnsw_ef", AUTO_EF_FALLBACK))

    def _keep_calibration(self, name: str, measured: dict[str, Any], build_s: float) -> dict[str, Any]:
        """Choose shard ``name``'s search beam from what its build child measured and keep it.

        The measurement (:data:`_BUILD_CHILD`, on a shard no graph covered before the build:
        the first build after a bulk ingest, a promoted slot): :data:`CALIBRATION_SAMPLE` stored
        points (the first in point-id order — uuid5 ids, so an arbitrary sample) are held out of
        the graph build, then searched exactly and through the new graph at each ``hnsw_ef`` of
        :data:`EF_CANDIDATES` until mean recall@10 reaches ``target_recall``, then written back.
        Held-out points are not nodes of the graph, like new queries; points that are nodes
        overestimate recall (100k: 0.984 vs 0.913 for queries at ``hnsw_ef`` 64;
        ``benchmarks/hnsw_recall_probe.py``). The smallest candidate reaching the target is kept
        (the largest measured when none does, with a warning), in ``.<folder>.search.json``
        beside the shard, read back on open.

        Returns the record: ``hnsw_ef``, ``recall``, ``sweep`` ``{ef: recall}``, ``points``,
        ``sample``, ``target_recall``, ``build_s`` (the build and measurement, seconds).
        """
        sweep = {int(e): float(r) for e, r in measured["sweep"].items()}
        chosen = next((ef for ef, r in sweep.items() if r >= self.target_recall), max(sweep))
        record = {"hnsw_ef": chosen, "recall": sweep[chosen], "sweep": {str(e): r for e, r in sweep.items()}, "points": int(measured["points"]),
                  "sample": int(measured["sample"]), "target_recall": self.target_recall, "build_s": build_s}
        if sweep[chosen] < self.target_recall:
            logger.warning("%s (%s shard): no hnsw_ef up to %d reaches recall@10 %.3f (%.3f); using %d", self.describe(), name, chosen, self.target_recall, sweep[chosen], chosen)
        self.calibration[name] = record
        path = self._aside(name, "search.json")
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(record, indent=2))
        os.replace(tmp, path)
        return record

    def _load_calibrations(self) -> None:
        """Read the saved :meth:`_keep_calibration` records of the open shards (an unreadable one is
        ignored and counted as not calibrated: the fallback beam is used until the next optimize)."""
        for name in self._handle.shards:
            path = self._aside(name, "search.json")
            try:
                record = json.loads(path.read_text())
                self.calibration[name] = {**record, "hnsw_ef": int(record["hnsw_ef"])}
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError, TypeError) as exc:
                logger.warning("ignoring %s (%s): the %s shard uses hnsw_ef %d until the next optimize", path, exc, name, AUTO_EF_FALLBACK)

    # -- reads -------------------------------------------------------------------------------
    def indexed_vectors_count(self) -> int:
        """Qdrant's ``indexed_vectors_count`` summed over the shards: vectors in HNSW-indexed segments."""
        if self.dim is None:
            return 0
        self._shard()
        with self._errors("info"):
            return sum(int(s.info().indexed_vectors_count) for s in list(self._handle.shards.values()))

    def search(self, vectors: np.ndarray, using: str, k: int, filter: Any = None) -> list[list[tuple[str, float, dict]]]:
        """Top-``k`` cosine search for each row of ``vectors`` (``(m, d) float32``) against the
        named vector ``using`` (its shard), optionally restricted by ``filter`` (see
        :mod:`antigravity.stores.filters`). Several rows go to the shard as one ``query_batch``.
        Returns per query ``[(doc_id, score, payload), ...]``, score descending then doc id; a
        slot never written has no shard and returns no hits.

        Raises:
            QueryError: ``k`` is not an integer in 0..``MAX_K`` (:func:`~antigravity.stores.shared.check_k`;
                names it), a query vector holds NaN or inf, or a malformed filter, or one
                outside the supported subset.
            StoreError: an unknown vector name, a wrong shape, or the shard refuses the query.
        """
        qe = _qe()
        vectors, k = check_search(vectors, using, k, self.dim, self.collection)
        flt = parse_filter(filter) if filter is not None else None  # parse_filter imports qdrant_client (seconds, cold)
        edge_flt = edge_filter(flt) if flt is not None else None
        if self.dim is None:
            return [[] for _ in range(len(vectors))]
        shard = self._shard(using)
        if shard is None:
            return [[] for _ in range(len(vectors))]
        ef = self.ef_for(using)
        params = qe.SearchParams(hnsw_ef=ef) if ef else None

        def fetch(rows: list[int], limit: int) -> list[list[tuple[float, dict]]]:
            # check_k keeps k + n_empty + 1 far inside qdrant_edge's u64 limit; built inside _errors
            # all the same, so a request qdrant_edge refuses is a StoreError, never a bare OverflowError
            with self._errors("search"):
                reqs = [
                    qe.QueryRequest(limit=limit, query=qe.Query.Nearest(vectors[i].tolist(), using=using), with_payload=True, with_vector=False, filter=edge_flt, params=params)
                    for i in rows
                ]
                results = shard.query_batch(qe.QueryBatchRequest(reqs)) if len(reqs) > 1 else [shard.query(reqs[0])]
            return [[(p.score, p.payload) for p in res] for res in results]

        return ranked_search(fetch, len(vectors), k, self.n_empty)

    def _slot_vectors(self, pids: list[str], names: Sequence[str]) -> dict[str, dict[str, list[float]]]:
        """``{point id: {slot: vector}}`` for the slots among ``names`` that have a shard."""
        out: dict[str, dict[str, list[float]]] = {}
        for slot in (n for n in names if n in SLOTS):
            shard = self._handle.shards.get(slot)
            if shard is None or not pids:
                continue
            with self._errors("retrieve"):
                for r in shard.retrieve(pids, False, [slot]):
                    vec = r.vector.get(slot) if isinstance(r.vector, dict) else None
                    if vec is not None:
                        out.setdefault(str(r.id), {})[slot] = vec
        return out

    def retrieve(self, doc_ids: Sequence[str], with_vectors: bool | Sequence[str] = False) -> dict[str, dict[str, Any]]:
        """The stored documents among ``doc_ids``: ``{doc_id: payload}``, or with ``with_vectors``
        (``True`` or vector names) ``{doc_id: {"payload": ..., "vectors": {name: (d,) float32}}}``;
        missing ids are absent (:meth:`antigravity.stores.base.VectorStore.retrieve`). The
        vectors come from each name's shard."""
        ids, names = id_list(doc_ids, "retrieve"), vector_names(with_vectors)
        if self.dim is None or not ids:
            return {}
        pids = [point_id(d) for d in ids]
        with self._errors("retrieve"):
            recs = self._shard().retrieve(pids, True, [RAW] if RAW in names else False)
        slots = self._slot_vectors([str(r.id) for r in recs], names)
        points = [SimpleNamespace(payload=r.payload, vector={**(r.vector if isinstance(r.vector, dict) else {}), **slots.get(str(r.id), {})}) for r in recs]
        return retrieved(points, names if with_vectors else None)

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
        """Yield ``(doc_ids, {name: (b, d) float32})`` batches over all stored documents, in
        point-id order of the raw shard (a vector a document lacks is a zero row)."""
        names = vector_names(list(names))
        for recs in self._scroll(batch_size, ["doc_id"], [RAW] if RAW in names else False):
            slots = self._slot_vectors([str(r.id) for r in recs], names)
            rows = [{**(r.vector if isinstance(r.vector, dict) else {}), **slots.get(str(r.id), {})} for r in recs]
            yield [str(r.payload["doc_id"]) for r in recs], vector_batch(self.dim or 0, names, rows)

    def count(self) -> int:
        """Number of stored documents (empty ones included); 0 without a collection."""
        if self.dim is None:
            return 0
        with self._errors("count"):
            return int(self._shard().count(_qe().CountRequest(exact=True)))

    def count_vectors(self, name: str) -> int:
        """Points in the shard of vector ``name`` (one shard per vector name, so a slot's shard
        can be restored apart from the raw one); 0 without a collection or that shard."""
        if self.dim is None:
            return 0
        with self._errors("count"):
            shard = self._shard(name)
            return 0 if shard is None else int(shard.count(_qe().CountRequest(exact=True)))

    def count_empty(self) -> int:
        """Number of stored empty documents (payload flag ``_ag_empty``); 0 without a collection."""
        if self.dim is None:
            return 0
        qe = _qe()
        flt = qe.Filter(must=[qe.FieldCondition(EMPTY_FLAG, match=qe.MatchValue(_edge_value(True)))])
        with self._errors("count"):
            return int(self._shard().count(qe.CountRequest(exact=True, filter=flt)))

    def close(self) -> None:
        """Flush and close the shards (releasing their locks); an in-memory store's folder is
        removed. Closing twice is harmless."""
        with self._write_lock:
            self._finalizer()
