"""Compare two `antigravity benchmark` result JSONs row by row (NDCG@10 per label setting,
mode and row, and every per-query score): prints each row and the largest difference. A row,
seed or query in one result only, or a value that is not a finite number, is an infinite
difference (exit 1). The row walk and the difference are ``benchmarks/compare_results.py``'s
(which compares per-seed Δ and gate decisions instead).

    python benchmarks/compare_runs.py results/architecture/scifact_fast_before_bb19cf5.json \
        results/architecture/scifact_fast_after_8369fab.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_results import gap, row_map  # noqa: E402

rows = row_map  # {(labels, corpus, mode, row name): row}


def per_query_gap(pa: dict, pb: dict) -> float:
    """Largest difference of per-query NDCG@10 ``{seed: {query id: score}}`` over every seed and
    query of either result (one missing on a side: ``inf``)."""
    return max((gap(pa.get(s, {}).get(q), pb.get(s, {}).get(q)) for s in pa.keys() | pb.keys() for q in pa.get(s, {}).keys() | pb.get(s, {}).keys()), default=0.0)


def main(a_path: str, b_path: str) -> int:
    a, b = rows(json.load(open(a_path))), rows(json.load(open(b_path)))
    worst = 0.0
    for key in sorted(set(a) | set(b)):
        ra, rb = a.get(key), b.get(key)
        if ra is None or rb is None:
            print(*key, "only in", a_path if rb is None else b_path)
            worst = float("inf")
            continue
        pa, pb = ra.get("per_query_ndcg@10", {}), rb.get("per_query_ndcg@10", {})
        dq = per_query_gap(pa, pb)
        d = gap(ra.get("ndcg@10"), rb.get("ndcg@10"))
        worst = max(worst, d, dq)
        print(*key, f"{ra['ndcg@10']:.6f}", f"{rb['ndcg@10']:.6f}", f"max per-query diff {dq:.2e}")
    print(f"largest difference: {worst:.2e}")
    return 0 if worst < 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
