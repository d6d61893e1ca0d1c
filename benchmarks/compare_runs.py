"""Compare two `antigravity benchmark` result JSONs row by row (NDCG@10 per label setting,
mode and row, and every per-query score): prints each row and the largest difference.

    python benchmarks/compare_runs.py results/architecture/scifact_fast_before_bb19cf5.json \
        results/architecture/scifact_fast_after_8369fab.json
"""

from __future__ import annotations

import json
import sys


def rows(result: dict) -> dict[tuple[str, str, str, str], dict]:
    out = {}
    for labels, run in result["runs"].items():
        for corpus, res in run["corpora"].items():
            for mode, m in res["modes"].items():
                named = ([("pretrained", m["pretrained"])] if m.get("pretrained") else []) + [(str(r["cycle"]), r) for r in m["cycles"]]
                for name, row in named:
                    out[(labels, corpus, mode, name)] = row
    return out


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
        dq = max((abs(pa[s][q] - pb[s][q]) for s in pa for q in pa[s]), default=0.0)  # {seed: {query id: NDCG@10}}
        d = abs(ra["ndcg@10"] - rb["ndcg@10"])
        worst = max(worst, d, dq)
        print(*key, f"{ra['ndcg@10']:.6f}", f"{rb['ndcg@10']:.6f}", f"max per-query diff {dq:.2e}")
    print(f"largest difference: {worst:.2e}")
    return 0 if worst < 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
