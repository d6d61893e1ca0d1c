"""Per-fold summary of a cross-fitted benchmark result (``antigravity benchmark --cross-fit``):
each fold's evaluation halves on their own.

Fold 0 is the single-half protocol whose evaluation halves the defaults were chosen on
(docs/protocol.md, "Design decisions"); fold 1 evaluates the other halves — texts the
earlier runs used only as label-free traffic — so it is a check of those choices on queries
that scored nothing before. Per label setting and mode: the mean over corpora of the last
row's Δ, the worst row-seed Δ, how many row-seeds fall below −0.005, and decision accuracy.

    python benchmarks/fold_summary.py results/protocol/crossfit/suite_none_L3_L6.json

A fold's evaluation queries come from ``protocol_per_seed[*].eval_ids`` (minus
``near_dup_ids``), or, in results recorded before those existed, from its gate decisions.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from antigravity.harness.benchmark import adapted_rows

TOL = 0.005


def fold_ids(corpus: dict, mode: dict) -> dict[tuple[int, int], list[str]]:
    """``{(seed, fold): headline-stratum evaluation query ids}``: from ``protocol_per_seed``
    (``eval_ids`` minus ``near_dup_ids``, recorded from session 10 on), else from the mode's
    decisions (``per_query_delta`` holds every evaluation query of its seed and fold; only
    valid when no evaluation query has a near-duplicate, which is checked)."""
    out: dict[tuple[int, int], list[str]] = {}
    for p in corpus["protocol_per_seed"]:
        if "eval_ids" in p:
            near = set(p.get("near_dup_ids", ()))
            out[(p["seed"], p["fold"])] = [q for q in p["eval_ids"] if q not in near]
    if out:
        return out
    if any(p["n_eval_near_dup"] for p in corpus["protocol_per_seed"]):
        raise ValueError("evaluation queries with near-duplicates and no recorded ids: the headline stratum cannot be rebuilt")
    for d in mode["decisions"]:
        out.setdefault((d["seed"], d["fold"]), list(d["per_query_delta"]))
    return out


def summarise_folds(result: dict) -> dict:
    """``{labels: {mode: {fold: {"last": [Δ per corpus], "row_seeds": [Δ …], "decisions": [bool …]}}}}``
    on the headline stratum of each fold's evaluation half.

    Raises:
        ValueError: a result that is not cross-fitted, or a seed and fold whose evaluation
            queries cannot be rebuilt.
    """
    out: dict = {}
    for lb, run in result["runs"].items():
        for name, corpus in run["corpora"].items():
            if corpus.get("folds", 1) != 2:
                raise ValueError(f"{name}: not cross-fitted (run with --cross-fit)")
            for mode_name, mode in corpus["modes"].items():
                ids = fold_ids(corpus, mode)
                base = mode["cycles"][0]["per_query_ndcg@10"]
                rows = adapted_rows(mode)
                for fold in (0, 1):
                    acc = out.setdefault(lb, {}).setdefault(mode_name, {}).setdefault(fold, {"last": [], "row_seeds": [], "decisions": []})
                    acc["decisions"] += [bool(d["correct"]) for d in mode["decisions"] if d["fold"] == fold and d.get("correct") is not None]
                    last = []
                    for r in rows:
                        pq = r["per_query_ndcg@10"]
                        missing = [sd for sd in pq if (int(sd), fold) not in ids]
                        if missing:
                            raise ValueError(f"{name} {mode_name}: seed {missing[0]} fold {fold} has no recorded evaluation queries")
                        last = [float(np.mean([pq[sd][q] - base[sd][q] for q in ids[(int(sd), fold)]])) for sd in pq]
                        acc["row_seeds"] += last
                    if last:
                        acc["last"].append(float(np.mean(last)))
    return out


def _cell(vals: list, fmt) -> str:
    return fmt(vals) if vals else "–"


def main() -> None:
    res = summarise_folds(json.load(open(sys.argv[1])))
    for lb, modes in res.items():
        print(f"\nlabels {lb}\n")
        print(f"| mode | fold | mean Δ last row (over corpora) | worst row-seed Δ | row-seeds below −{TOL} | decisions correct |")
        print("| --- | --- | --- | --- | --- | --- |")
        for mode, folds in modes.items():
            for fold, a in folds.items():
                n, ok = len(a["decisions"]), sum(a["decisions"])
                print(f"| {mode} | {fold} | {_cell(a['last'], lambda v: f'{np.mean(v):+.4f}')} | {_cell(a['row_seeds'], lambda v: f'{min(v):+.4f}')} "
                      f"| {sum(d < -TOL for d in a['row_seeds'])} of {len(a['row_seeds'])} | {_cell(a['decisions'], lambda v: f'{ok}/{n} ({ok / n:.2f})')} |")


if __name__ == "__main__":
    main()
