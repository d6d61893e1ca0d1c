"""Two designs run on the same protocol (same corpora, seeds, splits and folds — e.g. a setting
on and off): per corpus and mode, the last row's NDCG@10 of design B minus design A, paired per
evaluation query (each query's score averaged over the seeds that evaluated it, so a query is
one unit however many seeds saw it), with a paired two-sided t-test (``evaluation.paired_test``)
and Holm correction across the rows compared (``evaluation.holm``). Per-query scores cover every
evaluation query (stratum ``all``; on the test-only collections no evaluation query has a
near-duplicate, so ``all`` is the headline stratum there — the table says how many near-duplicate
queries a corpus has).

    python benchmarks/compare_designs.py results/protocol/crossfit/suite_none_L3_L6.json results/protocol/lexical/suite_none_L3_L6.json

Raises ``SystemExit`` (one line) when the two results are not the same protocol: different
seeds, cross-fitting, or evaluation queries.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from antigravity.evaluation import holm, paired_test  # noqa: E402


def last_row(mode: dict) -> dict:
    """The row a mode ends on: its last cycle, else its pre-trained row."""
    return mode["cycles"][-1] if mode.get("cycles") else mode["pretrained"]


def paired_scores(row: dict) -> dict[str, float]:
    """``{query id: NDCG@10}`` of a row, each query's mean over the seeds that evaluated it."""
    seen: dict[str, list[float]] = {}
    for per in row["per_query_ndcg@10"].values():
        for q, v in per.items():
            seen.setdefault(q, []).append(v)
    return {q: sum(v) / len(v) for q, v in seen.items()}


def compare(a: dict, b: dict, labels: str = "none") -> list[dict]:
    """Rows ``{"corpus", "mode", "a", "b", "delta", "p", "p_holm", "n", "near_dup"}`` of B − A
    (``n``: evaluation queries paired; ``near_dup``: near-duplicate evaluation queries summed over seeds).

    Raises:
        ValueError: the results differ in seeds or cross-fitting, or a row's evaluation queries differ.
    """
    for key in ("seeds", "cross_fit"):
        if a.get(key) != b.get(key):
            raise ValueError(f"{key}: {a.get(key)!r} vs {b.get(key)!r} — not the same protocol")
    out = []
    ra, rb = a["runs"][labels]["corpora"], b["runs"][labels]["corpora"]
    for corpus in [c for c in ra if c in rb]:
        for mode in [m for m in ra[corpus]["modes"] if m in rb[corpus]["modes"]]:
            pa, pb = (paired_scores(last_row(r[corpus]["modes"][mode])) for r in (ra, rb))
            if set(pa) != set(pb):
                raise ValueError(f"{corpus} {mode}: the evaluation queries differ ({len(set(pa) ^ set(pb))} not in both) — not the same splits")
            if any(set(x) != set(y) for x, y in zip(*(last_row(r[corpus]["modes"][mode])["per_query_ndcg@10"].values() for r in (ra, rb)))):
                raise ValueError(f"{corpus} {mode}: a seed evaluated different queries — not the same splits")
            t = paired_test(pa, pb)
            near = sum(p.get("n_eval_near_dup", 0) for p in ra[corpus].get("protocol_per_seed", []))
            out.append({"corpus": corpus, "mode": mode, "a": sum(pa.values()) / len(pa), "b": sum(pb.values()) / len(pb), "delta": t["delta"], "p": t["p"], "n": t["n"], "near_dup": near})
    for row, p in zip(out, holm([r["p"] for r in out])):
        row["p_holm"] = p
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="result JSON of design A (the reference)")
    ap.add_argument("b", help="result JSON of design B")
    ap.add_argument("--labels", default="none")
    args = ap.parse_args()
    try:
        rows = compare(*(json.loads(Path(p).read_text()) for p in (args.a, args.b)), labels=args.labels)
    except ValueError as exc:
        raise SystemExit(f"compare_designs: {exc}") from None
    print(f"B − A, last row, labels {args.labels}; A = {args.a}, B = {args.b}\n")
    print("| corpus | mode | A NDCG@10 | B NDCG@10 | B − A | p | p Holm | queries | near-duplicate evaluation queries (all seeds) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['corpus']} | {r['mode']} | {r['a']:.4f} | {r['b']:.4f} | {r['delta']:+.4f} | {r['p']:.2g} | {r['p_holm']:.2g} | {r['n']} | {r['near_dup']} |")


if __name__ == "__main__":
    main()
