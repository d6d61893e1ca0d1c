"""Which vectors can estimate an HNSW graph's recall for new queries? (issue 12, ``hnsw_ef``)

One ``qdrant_edge`` shard of N low-rank 384-d vectors (``benchmarks/scale.py``'s generator,
same seed), m 16 / ef_construct 100 (the engine's defaults). Before the graph is built, 100
random stored documents are deleted (*held out*); then recall@10 of the graph against exact
search, at ``hnsw_ef`` 64 … 512, is measured for three sets of 100 probe vectors:

* the held-out documents (not nodes of the graph),
* the benchmark's queries (``scale.py``'s query vectors, the reference),
* documents that are nodes of the graph (their own point left out of both lists) — what the
  rejected self-calibration of branch ``auto-ef`` used.

    PYTHONPATH=. python benchmarks/hnsw_recall_probe.py --n 100000 --out results/store/hnsw_recall_probe_100k.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import StreamedDocs  # noqa: E402

EFS = (64, 128, 256, 512)


def main() -> None:
    import qdrant_edge as qe

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--probes", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    docs = StreamedDocs("lowrank", a.seed, a.n, 200)
    X, Q = docs.materialise(), docs.queries
    cfg = qe.EdgeConfig(
        vectors={"v": qe.EdgeVectorParams(size=X.shape[1], distance=qe.Distance.Cosine)},
        hnsw_config=qe.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=10000),
        optimizers=qe.EdgeOptimizersConfig(indexing_threshold=10000),
    )
    shard = qe.EdgeShard.create(tempfile.mkdtemp(prefix="ag-probe-") + "/s", cfg)
    for i in range(0, a.n, 1000):
        shard.update(qe.UpdateOperation.upsert_points([qe.Point(j, {"v": X[j].tolist()}, {}) for j in range(i, min(a.n, i + 1000))]))
    rng = np.random.default_rng(a.seed + 5)
    held = rng.choice(a.n, a.probes, replace=False)
    shard.update(qe.UpdateOperation.delete_points([int(h) for h in held]))
    t0 = time.perf_counter()
    shard.optimize()
    build_s = time.perf_counter() - t0
    nodes = rng.choice(np.setdiff1d(np.arange(a.n), held), a.probes, replace=False)

    def top(vecs: np.ndarray, params, k: int) -> list[list[int]]:
        reqs = [qe.QueryRequest(limit=k, query=qe.Query.Nearest(v.tolist(), using="v"), with_payload=False, with_vector=False, params=params) for v in vecs]
        return [[int(p.id) for p in r] for r in shard.query_batch(qe.QueryBatchRequest(reqs))]

    def recall(vecs: np.ndarray, own: np.ndarray | None) -> dict[str, float]:
        def cut(lists: list[list[int]]) -> list[list[int]]:
            return [[t for t in lst if own is None or t != int(own[i])][:10] for i, lst in enumerate(lists)]

        truth = cut(top(vecs, qe.SearchParams(exact=True), 11))
        return {str(ef): float(np.mean([len(set(g) & set(t)) / 10 for g, t in zip(cut(top(vecs, qe.SearchParams(hnsw_ef=ef), 11)), truth)])) for ef in EFS}

    out = {
        "n": a.n, "probes": a.probes, "seed": a.seed, "build_s": build_s, "data": "benchmarks/scale.py lowrank", "m": 16, "ef_construct": 100,
        "recall@10": {"held_out_documents": recall(X[held], None), "benchmark_queries": recall(Q[: a.probes], None), "graph_node_documents": recall(X[nodes], nodes)},
    }
    shard.close()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2) + "\n")
    for name, row in out["recall@10"].items():
        print(f"{name:22s} " + "  ".join(f"ef {e}: {r:.3f}" for e, r in row.items()))


if __name__ == "__main__":
    main()
