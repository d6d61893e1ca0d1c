"""The store path of the engine at N documents, beside raw ``qdrant_edge`` and faiss.

Run (from the repository root)::

    PYTHONPATH=. python benchmarks/scale.py --n 10000 100000 --out results/
    PYTHONPATH=. python benchmarks/scale.py --n 100000 --data lowrank --out results/
    PYTHONPATH=. python benchmarks/scale.py --quick          # 2k-document smoke run

(``PYTHONPATH=.``: measure this checkout even when another one is installed in editable mode.)

Each N runs in its own subprocess (so ``ru_maxrss`` is that N's peak) and writes
``<out>/scale_<N>.json``; the parent prints one markdown table per N.

Data: **synthetic** unit-norm 384-d float32 vectors from ``numpy.random.default_rng(seed)``, N
documents and ``--queries`` queries drawn the same way. Nothing is encoded: the store path is
what is measured. ``--data gaussian`` (default): isotropic Gaussian rows normalised; random
high-dimensional vectors have no structure (all similarities crowd around 0), the worst case for
HNSW recall. ``--data lowrank``: a 32-d Gaussian through a fixed random 32x384 basis plus noise
0.1 per coordinate, a stand-in for the low intrinsic dimension of real embeddings (written to
``scale_<N>_lowrank.json``). ``--ef`` sets the search-time ``hnsw_ef`` sweep.

What is measured, per N, in one process:

* **engine** (:class:`antigravity.AntigravityEngine` on a persistent store in a temporary folder,
  with a stub encoder that maps document text ``doc-<i>`` to row ``i`` of the matrix; queries go
  through ``search_vectors(record=False)`` so no encoder is timed; ``store.index_threshold`` set
  above N so no background optimize runs): ``ingest`` of N pre-encoded documents (one call);
  search p50/p99 at k=10 exact (before optimize) and HNSW (after ``engine.optimize()``, timed);
  recall@10 of both against exact (faiss) ground truth; a doc-side promotion
  (``engine.activate(adapter, None, version=1)`` with a perturbed ``ResidualAdapter(384, 32)``:
  time of the slot rewrite, then search p50 on the rewritten slot, which is searched exactly until
  the next optimize); reopen (close, construct a new engine on the folder, time until the first
  ``search_vectors`` returns); disk size of the data folder; peak RSS of the process at the end of
  the engine phase (``ru_maxrss``; the documents are regenerated chunk by chunk, so the process
  holds one 100k-row chunk of input, not the matrix, except in the faiss part) and of the child
  process in which ``optimize()`` builds the graphs (``optimize_child_rss_peak_mb``,
  ``RUSAGE_CHILDREN``); queries/s of 8 threads vs 1.
* **raw qdrant_edge**: one ``EdgeShard`` with one cosine named vector, same HNSW parameters as
  the engine (m, ef_construct, hnsw_ef from the engine's settings), same upsert batch size,
  integer point ids, payload ``{"doc_id"}``; search with ``with_payload=False``: upsert docs/s,
  search p50/p99 exact and HNSW, optimize time, recall, reopen time, disk.
* **faiss** ``IndexFlatIP`` (exact, 1 OpenMP thread): add time, single-query search p50/p99.

Ratios are engine / raw qdrant_edge from the same process. Machine facts (nproc, CPU model,
load average at start and end) are recorded: the machine may be shared, so read ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

DIM = 384
K = 10
ON_DISK = os.environ.get("AG_SCALE_ON_DISK") == "1"  # --on-disk: the engine's store.on_disk (set for the child processes too)


# ---------------------------------------------------------------------------------------------
CHUNK = 100_000  # rows drawn per step; the draws (hence the vectors) depend on it


def _basis(rng: np.random.Generator) -> np.ndarray:
    """The fixed random ``(32, 384)`` unit-row basis of ``--data lowrank``."""
    basis = rng.standard_normal((32, DIM), dtype=np.float32) / np.sqrt(DIM).astype(np.float32)
    basis /= np.linalg.norm(basis, axis=1, keepdims=True)
    return basis


def _chunk_rows(rng: np.random.Generator, m: int, basis: np.ndarray | None, noise: float = 0.1) -> np.ndarray:
    """``m`` unit rows: isotropic Gaussian (``basis is None``) or ``normalise(z @ basis + noise * e)``."""
    if basis is None:
        x = rng.standard_normal((m, DIM), dtype=np.float32)
    else:
        x = rng.standard_normal((m, len(basis)), dtype=np.float32) @ basis + noise * rng.standard_normal((m, basis.shape[1]), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _rows(rng: np.random.Generator, n: int, basis: np.ndarray | None) -> np.ndarray:
    out = np.empty((n, DIM), dtype=np.float32)
    for i in range(0, n, CHUNK):
        out[i : i + CHUNK] = _chunk_rows(rng, min(CHUNK, n - i), basis)
    return out


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """``(n, 384) float32`` isotropic unit rows."""
    return _rows(rng, n, None)


def lowrank_rows(rng: np.random.Generator, n: int, basis: np.ndarray) -> np.ndarray:
    """Unit rows ``normalise(z @ basis + 0.1 * e)``, ``z`` and ``e`` Gaussian: a ``len(basis)``-dimensional
    structure in 384-d, closer to real embeddings' low intrinsic dimension than isotropic rows."""
    return _rows(rng, n, basis)


def make_data(kind: str, seed: int, n: int, nq: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    basis = None if kind == "gaussian" else _basis(rng)
    return _rows(rng, n, basis), _rows(rng, nq, basis)


class StreamedDocs:
    """The document matrix of :func:`make_data` without holding it: rows are regenerated chunk by
    chunk (:data:`CHUNK` rows, 147 MB) from the generator state saved at each chunk start,
    bit-identical to ``make_data(kind, seed, n, nq)[0]`` (tests/test_benchmarks_scale.py).
    Supports what the sides use: ``len``, ``x[i]``, ``x[i:j]`` and integer-array indexing
    (``(m, 384) float32``). ``queries`` is ``make_data``'s query matrix. Only one chunk is cached,
    so a process that streams the documents (engine, raw qdrant_edge) holds ~150 MB of input
    instead of 1.5 GB at 1M."""

    def __init__(self, kind: str, seed: int, n: int, nq: int) -> None:
        rng = np.random.default_rng(seed)
        self.basis = None if kind == "gaussian" else _basis(rng)
        self.n, self.chunk = n, CHUNK
        self.states: list[dict[str, Any]] = []
        for i in range(0, n, self.chunk):
            self.states.append(rng.bit_generator.state)
            _chunk_rows(rng, min(self.chunk, n - i), self.basis)
        self.queries = _rows(rng, nq, self.basis)
        self._cached: tuple[int, np.ndarray | None] = (-1, None)
        self.nbytes = min(n, self.chunk) * DIM * 4

    def __len__(self) -> int:
        return self.n

    def block(self, c: int) -> np.ndarray:
        """Rows ``[c * chunk, (c + 1) * chunk)``."""
        if self._cached[0] != c:
            rng = np.random.Generator(np.random.PCG64())
            rng.bit_generator.state = self.states[c]
            self._cached = (c, _chunk_rows(rng, min(self.chunk, self.n - c * self.chunk), self.basis))
        return self._cached[1]  # type: ignore[return-value]

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self.block(int(key) // self.chunk)[int(key) % self.chunk]
        if isinstance(key, slice):
            start, stop, _ = key.indices(self.n)
            key = np.arange(start, stop)
        idx = np.asarray(key, dtype=np.int64)
        out = np.empty((len(idx), DIM), np.float32)
        for c in np.unique(idx // self.chunk):
            sel = idx // self.chunk == c
            out[sel] = self.block(int(c))[idx[sel] - c * self.chunk]
        return out

    def materialise(self) -> np.ndarray:
        """The whole ``(n, 384) float32`` matrix (for faiss, whose index holds it anyway)."""
        return np.concatenate([self.block(c) for c in range(len(self.states))]) if self.n else np.zeros((0, DIM), np.float32)


class StubEncoder:
    """Encoder protocol over precomputed rows: ``doc-<i>`` -> docs[i], ``q-<j>`` -> queries[j]."""

    def __init__(self, docs: np.ndarray, queries: np.ndarray) -> None:
        self.name, self.dim = "synthetic-stub-384", DIM
        self.docs, self.queries = docs, queries

    def _rows(self, texts) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, DIM), np.float32)
        src = self.docs if texts[0].startswith("doc-") else self.queries
        idx = np.fromiter((int(t.rsplit("-", 1)[1]) for t in texts), dtype=np.int64, count=len(texts))
        return src[idx]

    def encode(self, texts):
        return self._rows(list(texts))

    def encode_uncached(self, texts):
        return self._rows(list(texts))

    def release(self) -> None:
        pass


def pct(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean())}


def time_queries(fn: Callable[[int], Any], nq: int, warm: int = 5) -> tuple[dict[str, float], list[Any]]:
    for j in range(min(warm, nq)):
        fn(j)
    ms, out = [], []
    for j in range(nq):
        t0 = time.perf_counter()
        r = fn(j)
        ms.append((time.perf_counter() - t0) * 1e3)
        out.append(r)
    return pct(ms), out


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[:K]) & set(t[:K].tolist())) / K for f, t in zip(found, truth)]))


def qps(fn: Callable[[int], Any], nq: int, threads: int) -> tuple[float, float]:
    """Queries/s of ``threads`` Python threads sharing ``nq`` queries, and the process CPU
    seconds per wall second meanwhile (about 1.0 when the calls are serialised)."""
    chunks = [range(t, nq, threads) for t in range(threads)]  # fn takes j modulo its query count
    ths = [threading.Thread(target=lambda c=c: [fn(j) for j in c]) for c in chunks]
    c0, t0 = time.process_time(), time.perf_counter()
    if threads == 1:
        for j in range(nq):
            fn(j)
    else:
        for t in ths:
            t.start()
        for t in ths:
            t.join()
    wall = time.perf_counter() - t0
    return nq / wall, (time.process_time() - c0) / wall


def du(path: str | Path) -> dict[str, int]:
    """Allocated (``du``) and apparent bytes of the files under ``path``."""
    alloc = apparent = 0
    for root, _, files in os.walk(path):
        for f in files:
            st = os.lstat(os.path.join(root, f))
            alloc += st.st_blocks * 512
            apparent += st.st_size
    return {"disk_bytes": alloc, "apparent_bytes": apparent}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def memory_cgroup() -> dict[str, Any] | None:
    """The process's cgroup-v1 memory limit and peak usage (bytes; page cache included, which the
    kernel reclaims at the limit), or ``None`` when there is no readable memory cgroup."""
    try:
        rel = next(ln.split(":", 2)[2] for ln in Path("/proc/self/cgroup").read_text().splitlines() if ln.split(":")[1] == "memory")
        base = Path("/sys/fs/cgroup/memory") / rel.lstrip("/")
        return {"path": rel, "limit_bytes": int((base / "memory.limit_in_bytes").read_text()), "max_usage_bytes": int((base / "memory.max_usage_in_bytes").read_text()),
                "failcnt": int((base / "memory.failcnt").read_text())}
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def machine() -> dict[str, Any]:
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")), "?")
    return {"nproc": os.cpu_count(), "cpu_model": model, "loadavg": list(os.getloadavg()), "python": sys.version.split()[0], "memory_cgroup": memory_cgroup()}


def paired(sides: dict[str, Callable[[int], list[int]]], nq: int, truth: np.ndarray, warm: int = 5) -> dict[str, dict[str, float]]:
    """p50/p99/mean ms and recall@10 of each side, the sides called in turn for every query
    (order alternating), so load from other jobs falls on all of them alike."""
    names = list(sides)
    for j in range(min(warm, nq)):
        for nm in names:
            sides[nm](j)
    ms: dict[str, list[float]] = {nm: [] for nm in names}
    found: dict[str, list[list[int]]] = {nm: [] for nm in names}
    for j in range(nq):
        for nm in (names if j % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            r = sides[nm](j)
            ms[nm].append((time.perf_counter() - t0) * 1e3)
            found[nm].append(r)
    return {nm: {**pct(ms[nm]), "recall@10": recall(found[nm], truth)} for nm in names}


class EngineSide:
    """The engine on a persistent store in ``<root>/engine`` with the stub encoder."""

    def __init__(self, root: str, docs: np.ndarray, queries: np.ndarray) -> None:
        from antigravity import AntigravityEngine

        self.docs, self.queries = docs, queries
        self.data = os.path.join(root, "engine")
        self.kw = dict(data_dir=self.data, store__collection="scale", store__index_threshold=10**9, store__backend="edge", store__on_disk=ON_DISK)
        self.eng = AntigravityEngine(encoder=StubEncoder(docs, queries), **self.kw)
        self.settings = self.store_settings(self.eng.settings.store)

    @staticmethod
    def store_settings(s: Any) -> dict[str, Any]:
        return {"m": s.m, "ef_construct": s.ef_construct, "hnsw_ef": s.hnsw_ef, "upsert_batch_size": s.upsert_batch_size, "store_text": s.store_text, "on_disk": s.on_disk}

    @classmethod
    def default_settings(cls) -> dict[str, Any]:
        """The store settings an engine would get (for a raw side run without the engine)."""
        from antigravity.settings import Settings

        return cls.store_settings(Settings().store)

    def ingest(self) -> float:
        t0 = time.perf_counter()
        self.eng.ingest([(f"doc-{i}", f"doc-{i}") for i in range(len(self.docs))])
        return time.perf_counter() - t0

    def search(self, j: int) -> list[int]:
        j %= len(self.queries)
        return [int(h.doc_id[4:]) for h in self.eng.search_vectors(self.queries[j : j + 1], K, record=False)[0]]

    def optimize(self) -> float:
        return self.eng.optimize()

    def set_ef(self, ef: int | None) -> None:
        self.eng.store.hnsw_ef = ef  # what store__hnsw_ef=ef gives a new engine (search-time)

    def close(self) -> None:
        self.eng.close()

    def reopen(self) -> float:
        from antigravity import AntigravityEngine

        t0 = time.perf_counter()
        self.eng = AntigravityEngine(encoder=StubEncoder(self.docs, self.queries), **self.kw)
        self.eng.search_vectors(self.queries[:1], K, record=False)
        return time.perf_counter() - t0


class RawSide:
    """One ``qdrant_edge.EdgeShard`` with one cosine named vector ``v``, HNSW like the engine's."""

    def __init__(self, root: str, docs: np.ndarray, queries: np.ndarray, settings: dict[str, Any]) -> None:
        import qdrant_edge as qe

        self.qe, self.docs, self.queries, self.bs = qe, docs, queries, settings["upsert_batch_size"]
        self.dir = os.path.join(root, "raw")
        self.path = os.path.join(self.dir, "shard")
        os.makedirs(self.path)
        self.cfg = qe.EdgeConfig(
            vectors={"v": qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine)},
            hnsw_config=qe.HnswIndexConfig(m=settings["m"], ef_construct=settings["ef_construct"], full_scan_threshold=10000),
            optimizers=qe.EdgeOptimizersConfig(indexing_threshold=10000),
        )
        self.shard = qe.EdgeShard.create(self.path, self.cfg)
        from antigravity.stores.edge import AUTO_EF_FALLBACK

        self.auto_ef = AUTO_EF_FALLBACK
        self.set_ef(settings["hnsw_ef"])

    def ingest(self) -> float:
        qe, docs, n = self.qe, self.docs, len(self.docs)
        t0 = time.perf_counter()
        for i in range(0, n, self.bs):
            pts = [qe.Point(j, {"v": docs[j].tolist()}, {"doc_id": f"doc-{j}"}) for j in range(i, min(n, i + self.bs))]
            self.shard.update(qe.UpdateOperation.upsert_points(pts))
        return time.perf_counter() - t0

    def search(self, j: int) -> list[int]:
        qe = self.qe
        j %= len(self.queries)
        req = qe.QueryRequest(limit=K, query=qe.Query.Nearest(self.queries[j].tolist(), using="v"), with_payload=False, with_vector=False, params=self.params)
        return [int(p.id) for p in self.shard.query(req)]

    def optimize(self) -> float:
        t0 = time.perf_counter()
        self.shard.optimize()
        return time.perf_counter() - t0

    def set_ef(self, ef: int | str | None) -> None:
        """``"auto"``: the beam the engine calibrated in this run (``auto_ef``; the engine's
        fallback when no engine ran beside it), so both sides search with the same beam."""
        if ef == "auto":
            ef = self.auto_ef
        self.params = self.qe.SearchParams(hnsw_ef=ef) if ef else None
        self.ef_used = ef

    def close(self) -> None:
        self.shard.close()

    def reopen(self) -> float:
        t0 = time.perf_counter()
        self.shard = self.qe.EdgeShard.load(self.path, self.cfg)
        self.search(0)
        return time.perf_counter() - t0


def run_faiss(docs: np.ndarray, queries: np.ndarray) -> dict[str, Any]:
    import faiss

    faiss.omp_set_num_threads(1)
    idx = faiss.IndexFlatIP(DIM)
    t0 = time.perf_counter()
    idx.add(docs)
    r: dict[str, Any] = {"add_s": time.perf_counter() - t0}
    r["add_docs_per_s"] = len(docs) / r["add_s"]
    r["exact"], _ = time_queries(lambda j: idx.search(queries[j : j + 1], K), len(queries))
    r["exact"]["recall@10"] = 1.0
    return r


def cold_reopen_child(kind: str, folder: str) -> None:
    """In a fresh interpreter: import, open ``folder`` and run one query; prints JSON seconds
    (``import_s``, ``open_s`` = construct, ``first_result_s`` = construct + first search)."""
    t0 = time.perf_counter()
    q = unit_rows(np.random.default_rng(123), 1)
    if kind == "engine":
        from antigravity import AntigravityEngine

        t1 = time.perf_counter()
        eng = AntigravityEngine(encoder=StubEncoder(np.zeros((0, DIM), np.float32), q), data_dir=folder, store__collection="scale", store__index_threshold=10**9, store__backend="edge", store__on_disk=ON_DISK)
        t2 = time.perf_counter()
        eng.search_vectors(q, K, record=False)
        t3 = time.perf_counter()
        eng.close()
    else:
        import qdrant_edge as qe

        t1 = time.perf_counter()
        cfg = qe.EdgeConfig(vectors={"v": qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine)})
        shard = qe.EdgeShard.load(folder, cfg)
        t2 = time.perf_counter()
        shard.query(qe.QueryRequest(limit=K, query=qe.Query.Nearest(q[0].tolist(), using="v"), with_payload=False, with_vector=False))
        t3 = time.perf_counter()
        shard.close()
    print(json.dumps({"import_s": t1 - t0, "open_s": t2 - t1, "first_result_s": t3 - t1, "qdrant_client_imported": "qdrant_client" in sys.modules}))


def cold_reopen(kind: str, folder: str) -> dict[str, Any]:
    """Reopen in a new process (a restart): the child's own timings plus the wall time of the
    whole subprocess (interpreter start and imports included)."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--reopen", kind, folder], capture_output=True, text=True, check=True)
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "process_wall_s": time.perf_counter() - t0}


DATA_DOC = {
    "gaussian": "synthetic unit-norm isotropic Gaussian 384-d float32 (worst case for HNSW recall)",
    "lowrank": "synthetic unit-norm 384-d float32: a 32-d Gaussian through a fixed random 32x384 basis plus Gaussian noise 0.1 per coordinate",
}


def exact_top_k(docs: np.ndarray, queries: np.ndarray, transform: Callable[[np.ndarray], np.ndarray] | None = None, chunk: int = 100_000) -> np.ndarray:
    """Exact cosine top-``K`` row indices ``(len(queries), K)`` int64 of ``docs`` (unit rows, or
    ``transform(docs)`` re-normalised), streamed in chunks so no copy of the matrix is held."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for i in range(0, len(docs), chunk):
        block = docs[i : i + chunk]
        if transform is not None:
            block = transform(block)
            block = block / np.linalg.norm(block, axis=1, keepdims=True)
        sc = queries @ block.T
        s = np.concatenate([best_s, sc], axis=1)
        idx = np.concatenate([best_i, np.broadcast_to(np.arange(i, i + len(block)), sc.shape)], axis=1)
        top = np.argsort(-s, axis=1, kind="stable")[:, :K]
        best_s, best_i = np.take_along_axis(s, top, 1), np.take_along_axis(idx, top, 1)
    return best_i


class PeakMemory:
    """Samples ``/proc/self/status`` every ``interval`` s in a daemon thread and keeps the peak
    ``VmRSS``, ``RssAnon`` (heap: what the process really holds) and ``RssFile`` (mapped file
    pages, e.g. Qdrant's mmapped segments: counted by ``ru_maxrss`` but reclaimable by the kernel)."""

    def __init__(self, interval: float = 0.2) -> None:
        self.peak: dict[str, float] = {"VmRSS": 0.0, "RssAnon": 0.0, "RssFile": 0.0}
        self.phase_peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def sample(self) -> dict[str, float]:
        now = {}
        for ln in Path("/proc/self/status").read_text().splitlines():
            key = ln.split(":", 1)[0]
            if key in self.peak:
                now[key] = int(ln.split()[1]) / 1024  # kB -> MiB
                self.peak[key] = max(self.peak[key], now[key])
                self.phase_peak[key] = max(self.phase_peak.get(key, 0.0), now[key])
        return now

    def take_phase(self) -> dict[str, float]:
        """Peaks since the previous call (MiB), then start a new phase."""
        self.sample()
        out, self.phase_peak = self.phase_peak, {}
        return out

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.sample()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self.sample()
        return {f"peak_{k}_mb": v for k, v in self.peak.items()}


def child(n: int, nq: int, threads_nq: int, seed: int, out: Path, tmp_root: str | None, efs: list[int], data: str = "gaussian",
          sides_run: tuple[str, ...] = ("engine", "raw", "faiss")) -> None:
    import torch

    from antigravity.adaptation.adapter import ResidualAdapter

    phases: list[dict[str, Any]] = []

    def log(msg: str) -> None:
        phases.append({"phase": msg, **{f"peak_{k}_mb": round(v, 1) for k, v in mem.take_phase().items()}})  # peaks within each phase
        print(f"[n={n} {'+'.join(sides_run)} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    import antigravity

    mem = PeakMemory()
    res: dict[str, Any] = {"memory_by_phase": phases, "antigravity": antigravity.__file__, "n": n, "dim": DIM, "k": K, "queries": nq, "threads_queries": threads_nq, "seed": seed, "machine_start": machine(),
                           "data": DATA_DOC[data], "sides_in_this_process": list(sides_run)}
    docs = StreamedDocs(data, seed, n, nq)  # the documents are regenerated chunk by chunk: the process holds one chunk, not the matrix
    queries = docs.queries
    res["data_held_mb"] = (docs.nbytes + queries.nbytes) / 2**20
    truth = exact_top_k(docs, queries)
    root = tempfile.mkdtemp(prefix=f"ag-scale-{n}-", dir=tmp_root)
    e: dict[str, Any] = {}
    q: dict[str, Any] = {}
    try:
        pairs: list[tuple[dict[str, Any], Any, str]] = []
        settings = EngineSide.default_settings()
        if "engine" in sides_run:
            eng = EngineSide(root, docs, queries)
            settings = e["settings"] = eng.settings
            pairs.append((e, eng, "engine"))
            res["engine"] = e
        if "raw" in sides_run:
            raw = RawSide(root, docs, queries, settings)
            pairs.append((q, raw, "raw"))
            res["raw_qdrant_edge"] = q
        sides = {name: side.search for _, side, name in pairs}
        for r, side, name in pairs:
            r["ingest_s"] = side.ingest()
            r["ingest_docs_per_s"] = n / r["ingest_s"]
            log(f"{name} ingest {r['ingest_s']:.1f}s")
        if pairs:
            t = paired(sides, nq, truth)
            for r, _, name in pairs:
                r["exact"] = t[name]
            for r, side, name in pairs:
                r["optimize_s"] = side.optimize()
                log(f"{name} optimize {r['optimize_s']:.1f}s")
                if name == "engine":  # EdgeStore builds the graphs in a child process: its peak is the build's memory
                    r["optimize_child_rss_peak_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
                    r["hnsw_ef_calibration"] = side.eng.store.calibration  # store.hnsw_ef = "auto": what it measured and chose
                    if "raw" in sides_run:
                        raw.auto_ef = side.eng.store.ef_for("raw")
                        raw.set_ef(settings["hnsw_ef"])
            if "raw" in sides_run:
                q["hnsw_ef_used"] = raw.ef_used
            t = paired(sides, nq, truth)
            for r, _, name in pairs:
                r["hnsw"] = t[name]
            for r, side, _ in pairs:
                r["qps_1_thread"], r["cpu_per_wall_1_thread"] = qps(side.search, threads_nq, 1)
                r["qps_8_threads"], r["cpu_per_wall_8_threads"] = qps(side.search, threads_nq, 8)
                r["threads_8_over_1"] = r["qps_8_threads"] / r["qps_1_thread"]
            for r, _, _ in pairs:
                r["ef_sweep"] = []
            for ef in efs:
                for _, side, _ in pairs:
                    side.set_ef(ef)
                t = paired(sides, nq, truth)
                for r, _, name in pairs:
                    r["ef_sweep"].append({"hnsw_ef": ef, **t[name]})
            for _, side, _ in pairs:
                side.set_ef(settings["hnsw_ef"])
            log("searches done")

        if "engine" in sides_run:
            torch.manual_seed(0)
            adapter = ResidualAdapter(DIM, 32)
            with torch.no_grad():
                adapter.up.weight.normal_(0.0, 0.05)
            t0 = time.perf_counter()
            eng.eng.activate(adapter, None, version=1)
            e["promotion_s"] = time.perf_counter() - t0
            log(f"engine promotion {e['promotion_s']:.1f}s")
            truth_moved = exact_top_k(docs, queries, transform=adapter.transform)
            e["after_promotion"] = {**paired({"engine": eng.search}, nq, truth_moved)["engine"], "slot": eng.eng.served_version.slot}
            e["indexed_vectors_after_promotion"] = eng.eng.store.indexed_vectors_count()

        for _, side, _ in pairs:
            side.close()
        for r, side, _ in pairs:
            r["reopen_to_first_result_s"] = side.reopen()
        if "engine" in sides_run:
            e["reopen_served_version"] = eng.eng.served_version.version
        for _, side, _ in pairs:
            side.close()
        if "engine" in sides_run:
            e["cold_reopen"] = cold_reopen("engine", eng.data)
            e.update(du(eng.data))
        if "raw" in sides_run:
            q["cold_reopen"] = cold_reopen("raw", raw.path)
            q.update(du(raw.dir))
        if pairs:
            log("cold reopens done")
        for r, _, _ in pairs:
            r["rss_peak_mb"] = rss_mb()  # this process up to here: the sides in it + the matrices (see module doc)
            r.update(mem.stop() if len(pairs) == 1 else {})
        if "faiss" in sides_run:
            res["faiss"] = run_faiss(docs.materialise(), queries)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    res["rss_peak_process_mb"] = rss_mb()
    res["machine_end"] = machine()
    out.mkdir(parents=True, exist_ok=True)
    (out / result_name(n, data, sides_run)).write_text(json.dumps(res, indent=2) + "\n")
    log(f"wrote {out / result_name(n, data, sides_run)}")


# ---------------------------------------------------------------------------------------------
def result_name(n: int, data: str, sides: tuple[str, ...] | None = None) -> str:
    """``scale_<N>[_<data>].json``; a one-side part of a ``--separate`` run adds ``.<side>``."""
    base = (f"scale_{n}" if data == "gaussian" else f"scale_{n}_{data}") + ("_ondisk" if ON_DISK else "")
    return f"{base}.json" if sides is None or len(sides) != 1 else f"{base}.{sides[0]}.json"


def merge_separate(n: int, data: str, out: Path) -> dict[str, Any]:
    """One result from the per-side files of a ``--separate`` run (searches not paired)."""
    parts = {side: json.loads((out / result_name(n, data, (side,))).read_text()) for side in ("engine", "raw", "faiss")}
    res = {k: v for k, v in parts["engine"].items() if k not in ("rss_peak_process_mb", "sides_in_this_process")}
    res["raw_qdrant_edge"], res["faiss"] = parts["raw"]["raw_qdrant_edge"], parts["faiss"]["faiss"]
    res["separate_processes"] = True
    res["rss_peak_process_mb"] = parts["engine"]["rss_peak_process_mb"]
    res["machine_end"] = parts["faiss"]["machine_end"]
    res["parts"] = {side: {"machine_start": p["machine_start"], "machine_end": p["machine_end"], "rss_peak_process_mb": p["rss_peak_process_mb"]} for side, p in parts.items()}
    (out / result_name(n, data)).write_text(json.dumps(res, indent=2) + "\n")
    return res


def table(res: dict[str, Any]) -> str:
    e, q, f = res["engine"], res["raw_qdrant_edge"], res["faiss"]

    def fmt(v: Any, nd: int = 2) -> str:
        if v is None:
            return "—"
        if isinstance(v, float):
            return f"{v:,.{nd}f}" if abs(v) < 1000 else f"{v:,.0f}"
        return f"{v:,}" if isinstance(v, int) else str(v)

    rows = [
        ("ingest / upsert / add, docs/s", e["ingest_docs_per_s"], q["ingest_docs_per_s"], f["add_docs_per_s"], True),
        ("search p50 ms, exact", e["exact"]["p50_ms"], q["exact"]["p50_ms"], f["exact"]["p50_ms"], True),
        ("search p99 ms, exact", e["exact"]["p99_ms"], q["exact"]["p99_ms"], f["exact"]["p99_ms"], True),
        ("recall@10, exact", e["exact"]["recall@10"], q["exact"]["recall@10"], 1.0, False),
        ("optimize s", e["optimize_s"], q["optimize_s"], None, True),
        ("search p50 ms, HNSW", e["hnsw"]["p50_ms"], q["hnsw"]["p50_ms"], None, True),
        ("search p99 ms, HNSW", e["hnsw"]["p99_ms"], q["hnsw"]["p99_ms"], None, True),
        ("recall@10, HNSW", e["hnsw"]["recall@10"], q["hnsw"]["recall@10"], None, True),
        ("q/s, 1 thread (HNSW)", e["qps_1_thread"], q["qps_1_thread"], None, True),
        ("q/s, 8 threads (HNSW)", e["qps_8_threads"], q["qps_8_threads"], None, True),
        ("8 threads / 1 thread", e["threads_8_over_1"], q["threads_8_over_1"], None, True),
        ("CPU s per wall s, 8 threads", e["cpu_per_wall_8_threads"], q["cpu_per_wall_8_threads"], None, False),
        ("doc-side promotion s", e["promotion_s"], None, None, False),
        ("search p50 ms after promotion (exact)", e["after_promotion"]["p50_ms"], None, None, False),
        ("recall@10 after promotion", e["after_promotion"]["recall@10"], None, None, False),
        ("reopen to first result s (same process)", e["reopen_to_first_result_s"], q["reopen_to_first_result_s"], None, True),
        ("reopen to first result s (new process, after imports)", e["cold_reopen"]["first_result_s"], q["cold_reopen"]["first_result_s"], None, True),
        ("  imports s (new process)", e["cold_reopen"]["import_s"], q["cold_reopen"]["import_s"], None, True),
        ("disk MB", e["disk_bytes"] / 2**20, q["disk_bytes"] / 2**20, None, True),
        (("peak RSS MB (engine process: engine + data)" if res.get("separate_processes") else "peak RSS MB (whole process: engine + raw + faiss + data)"),
         res["rss_peak_process_mb"], res["parts"]["raw"]["rss_peak_process_mb"] if res.get("separate_processes") else None, None, False),
        ("peak RSS MB of the optimize() child (graph build on a shard copy)", e.get("optimize_child_rss_peak_mb"), None, None, False),
        ("  of which heap (peak RssAnon MB)", e.get("peak_RssAnon_mb"), q.get("peak_RssAnon_mb"), None, False),
        ("  of which mapped files (peak RssFile MB)", e.get("peak_RssFile_mb"), q.get("peak_RssFile_mb"), None, False),
    ]
    lines = [f"N = {res['n']:,}, data: {res['data']}", "", "| metric | engine | raw qdrant_edge | faiss FlatIP | engine / raw |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, ev, qv, fv, ratio in rows:
        rt = fmt(ev / qv) if ratio and ev is not None and qv else "—"
        nd = 3 if "recall" in name else 2
        lines.append(f"| {name} | {fmt(ev, nd)} | {fmt(qv, nd)} | {fmt(fv, nd)} | {rt} |")
    lines += ["", f"hnsw_ef sweep at N = {res['n']:,} (search-time; same graphs)", "",
              "| hnsw_ef | engine p50 ms | engine recall@10 | raw p50 ms | raw recall@10 | p50 engine / raw |", "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for es, qs in zip(e.get("ef_sweep", []), q.get("ef_sweep", [])):
        lines.append(f"| {es['hnsw_ef']} | {es['p50_ms']:.2f} | {es['recall@10']:.3f} | {qs['p50_ms']:.2f} | {qs['recall@10']:.3f} | {es['p50_ms'] / qs['p50_ms']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--out", type=Path, default=Path("results"))
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--threads-queries", type=int, default=2000, help="queries for the 1- vs 8-thread q/s")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", choices=sorted(DATA_DOC), default="gaussian", help="gaussian: isotropic unit rows (default); lowrank: 32-d structure plus noise")
    ap.add_argument("--ef", type=int, nargs="*", default=[64, 128, 256, 512, 1024, 2048], help="hnsw_ef values of the search-time sweep")
    ap.add_argument("--tmp", default=None, help="parent folder of the temporary stores")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per N before its subprocess is stopped")
    ap.add_argument("--quick", action="store_true", help="2k-document smoke run (50 queries)")
    ap.add_argument("--separate", action="store_true", help="engine, raw qdrant_edge and faiss each in its own process (own peak RSS; searches not paired)")
    ap.add_argument("--on-disk", action="store_true", help="the engine with store.on_disk = true (vectors memory-mapped, read on demand); results named *_ondisk")
    ap.add_argument("--sides", nargs="+", default=["engine", "raw", "faiss"], help=argparse.SUPPRESS)
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--reopen", nargs=2, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.on_disk:
        os.environ["AG_SCALE_ON_DISK"] = "1"  # inherited by the --child / --reopen subprocesses
        globals()["ON_DISK"] = True
    if a.quick:
        a.n, a.queries, a.threads_queries = [2000], 50, 400
    if a.reopen is not None:
        cold_reopen_child(*a.reopen)
        return
    if a.child is not None:
        child(a.child, a.queries, a.threads_queries, a.seed, a.out, a.tmp, a.ef, a.data, tuple(a.sides))
        return
    for n in a.n:
        ok = True
        for sides in ([["engine"], ["raw"], ["faiss"]] if a.separate else [["engine", "raw", "faiss"]]):
            cmd = [sys.executable, __file__, "--child", str(n), "--out", str(a.out), "--queries", str(a.queries), "--threads-queries", str(a.threads_queries), "--seed", str(a.seed),
                   "--data", a.data, "--ef", *map(str, a.ef), "--sides", *sides]
            if a.tmp:
                cmd += ["--tmp", a.tmp]
            proc = subprocess.Popen(cmd)
            try:
                rc = proc.wait(timeout=a.timeout)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                print(f"N = {n} ({'+'.join(sides)}): stopped after {a.timeout} s (not measured)", file=sys.stderr)
                ok = False
                break
            if rc != 0:
                print(f"N = {n} ({'+'.join(sides)}): subprocess failed (exit {rc})", file=sys.stderr)
                ok = False
                break
        if ok:
            res = merge_separate(n, a.data, a.out) if a.separate else json.loads((a.out / result_name(n, a.data)).read_text())
            print(table(res) + "\n", flush=True)


if __name__ == "__main__":
    main()
