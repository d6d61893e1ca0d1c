"""Do searches keep working while the store builds its HNSW index?

The engine (persistent Edge store, stub encoder, synthetic vectors as in ``benchmarks/scale.py``)
ingests N documents; then ``engine.optimize()`` runs in a background thread — as the index
policy runs it after a large ingest or a promotion — while the main thread searches in a loop.
Reported: optimize seconds, searches completed meanwhile, their p50/p99/max latency, and the
longest gap between two consecutive completed searches, counting the loop's start and end (a
stall the latency of a single call does not show: a thread waiting for the GIL between calls is
not inside a timed call). A
reference loop without optimize gives the normal search rate in the same run.

    PYTHONPATH=. python benchmarks/search_during_optimize.py --n 30000 --out results/store/search_during_optimize_30k.json
    PYTHONPATH=. python benchmarks/search_during_optimize.py --n 30000 --in-process   # the build in the serving process
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import EngineSide, machine, make_data  # noqa: E402


def loop(e: EngineSide, alive, nq: int, start: float | None = None) -> dict:
    """Search until ``alive()`` is false; gaps are counted from ``start`` (default: now)."""
    lat, done = [], [time.perf_counter() if start is None else start]
    j = 0
    while alive():
        a = time.perf_counter()
        e.search(j % nq)
        b = time.perf_counter()
        lat.append((b - a) * 1e3)
        done.append(b)
        j += 1
    done.append(time.perf_counter())  # the loop's end: a stall after the last search counts too
    gaps = np.diff(done) * 1e3
    arr = np.asarray(lat) if lat else np.zeros(1)
    return {"searches": len(lat), "p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99)), "max_ms": float(arr.max()),
            "longest_gap_between_searches_ms": float(gaps.max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=30000)
    ap.add_argument("--data", default="lowrank")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--in-process", action="store_true", help="build in the serving process (store optimize_in_subprocess = False): the behaviour before the child-process build")
    a = ap.parse_args()
    docs, queries = make_data(a.data, 0, a.n, 200)
    root = tempfile.mkdtemp(prefix="ag-optstall-")
    try:
        e = EngineSide(root, docs, queries)
        e.eng.store.optimize_in_subprocess = not a.in_process
        e.ingest()
        t_end = time.perf_counter() + 10
        ref = loop(e, lambda: time.perf_counter() < t_end, len(queries))
        ref["searches_per_s"] = ref["searches"] / 10
        th = threading.Thread(target=e.optimize)
        t0 = time.perf_counter()
        th.start()
        during = loop(e, th.is_alive, len(queries), start=t0)
        th.join()
        opt_s = time.perf_counter() - t0
        during["searches_per_s"] = during["searches"] / opt_s
        res = {"n": a.n, "data": a.data, "in_process": a.in_process, "optimize_s": opt_s, "without_optimize_10s": ref, "during_optimize": during, "machine": machine()}
        print(json.dumps(res, indent=2))
        if a.out:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(res, indent=2) + "\n")
        e.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
