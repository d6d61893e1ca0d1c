"""How much of the bar "no row-seed below frozen − 0.005" is decided by which queries happen to
be evaluated? For every adapted row-seed of a benchmark result (pre-training and each cycle,
each seed; per fold of a cross-fitted run, and both folds together), on the headline stratum:

* the observed Δ NDCG@10 against the frozen student on the same queries;
* ``p_redraw``: the chance that Δ falls below −0.005 when the evaluation queries are drawn
  again from the same population — a bootstrap over queries of the row-seed's own per-query
  differences (Efron & Tibshirani 1993), so each row keeps its own measured effect;
* ``p_null``: the same chance if the row changed nothing in expectation — a sign-flip
  randomisation of its per-query differences (Fisher's randomisation test, as in Smucker,
  Allan & Carterette, CIKM 2007).

Summed over row-seeds these give the number of rows below the bar one should expect from the
query draw alone, and ``P(none below)`` = Π(1 − p) the chance that a re-drawn evaluation set
shows no row below the bar at all (row-seeds treated as independent, which they are not —
cycles of one seed share queries — so read it as a rough guide).

    python benchmarks/row_bar_noise.py results/protocol/lexical/suite_none_L3_L6.json
    python benchmarks/row_bar_noise.py results/protocol/lexical/parts/scifact_none_L3_L6.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from antigravity.harness.benchmark import adapted_rows

TOL = 0.005


def headline_ids(corpus: dict, mode: dict | None = None) -> dict[tuple[int, int | None], list[str]]:
    """``{(seed, fold): headline-stratum evaluation ids}`` (fold ``None`` for a run that is not
    cross-fitted), from ``protocol_per_seed[*].eval_ids`` minus ``near_dup_ids``.

    Raises:
        ValueError: a result recorded before evaluation ids were kept.
    """
    out: dict[tuple[int, int | None], list[str]] = {}
    for p in corpus["protocol_per_seed"]:
        if "eval_ids" not in p:
            raise ValueError("no protocol_per_seed[*].eval_ids in this result (recorded before session 10)")
        near = set(p.get("near_dup_ids", ()))
        out[(int(p["seed"]), p.get("fold"))] = [q for q in p["eval_ids"] if q not in near]
    return out


def chance_below(diff: np.ndarray, *, null: bool, n_draws: int, rng: np.random.Generator, tol: float = TOL) -> float:
    """Share of ``n_draws`` re-drawn means of ``diff`` ``(n,) float64`` below ``-tol``: a
    bootstrap over queries (``null=False``) or a sign-flip randomisation (``null=True``)."""
    n = len(diff)
    if null:
        means = (rng.choice((-1.0, 1.0), size=(n_draws, n)) * diff).mean(1)
    else:
        means = diff[rng.integers(0, n, size=(n_draws, n))].mean(1)
    return float((means < -tol).mean())


def row_seeds(result: dict, *, n_draws: int = 5_000, seed: int = 0, skipped: list[str] | None = None) -> list[dict]:
    """One record per labels × corpus × mode × adapted row × seed × fold setting
    (``"0"``, ``"1"`` and ``"both"`` for a cross-fitted run, ``"all"`` otherwise): ``delta``,
    ``n``, ``p_redraw``, ``p_null``. A corpus recorded without evaluation ids is left out and
    named in ``skipped`` (raises ValueError when ``skipped`` is None)."""
    rng = np.random.default_rng(seed)
    out = []
    for lb, run in result["runs"].items():
        for name, corpus in run["corpora"].items():
            try:
                ids = headline_ids(corpus, None)
            except ValueError as e:
                if skipped is None:
                    raise ValueError(f"{name}: {e}") from None
                skipped.append(f"{lb}/{name}")
                continue
            for mode_name, mode in corpus["modes"].items():
                base = mode["cycles"][0]["per_query_ndcg@10"]
                for r, row in enumerate(adapted_rows(mode)):
                    pq = row["per_query_ndcg@10"]
                    for sd in pq:
                        folds = sorted((f for s, f in ids if s == int(sd)), key=str)
                        settings = {"all": folds} if folds == [None] else {**{str(f): [f] for f in folds}, "both": folds}
                        for setting, fs in settings.items():
                            qs = [q for f in fs for q in ids[(int(sd), f)]]
                            diff = np.array([pq[sd][q] - base[sd][q] for q in qs], dtype=np.float64)
                            out.append({"labels": lb, "corpus": name, "mode": mode_name, "row": r, "seed": int(sd), "folds": setting,
                                        "n": len(diff), "delta": float(diff.mean()),
                                        "p_redraw": chance_below(diff, null=False, n_draws=n_draws, rng=rng),
                                        "p_null": chance_below(diff, null=True, n_draws=n_draws, rng=rng)})
    return out


def summarise(records: list[dict]) -> dict[tuple[str, str], dict]:
    """Per (labels, fold setting): row-seeds, observed below −0.005, expected below under a
    re-draw and under no effect, and P(none below) for each."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["labels"], r["folds"])].append(r)
    out = {}
    for key, rs in sorted(groups.items()):
        pr = np.array([r["p_redraw"] for r in rs])
        pn = np.array([r["p_null"] for r in rs])
        out[key] = {"row_seeds": len(rs), "observed_below": sum(r["delta"] < -TOL for r in rs),
                    "expected_below_redraw": float(pr.sum()), "p_none_below_redraw": float(np.prod(1 - pr)),
                    "expected_below_null": float(pn.sum()), "p_none_below_null": float(np.prod(1 - pn)),
                    "median_n": float(np.median([r["n"] for r in rs]))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", type=Path)
    ap.add_argument("--draws", type=int, default=5_000)
    args = ap.parse_args()
    skipped: list[str] = []
    records = [r for p in args.results for r in row_seeds(json.loads(p.read_text()), n_draws=args.draws, skipped=skipped)]
    if skipped:
        print(f"Left out (no evaluation ids recorded): {', '.join(skipped)}\n")
    if not records:
        raise SystemExit("no row-seed with recorded evaluation ids in these results")
    print("| labels | folds | row-seeds | median queries | below −0.005 (observed) | expected, re-drawn queries | P(none below), re-drawn | expected, no effect | P(none below), no effect |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for (lb, folds), s in summarise(records).items():
        print(f"| {lb} | {folds} | {s['row_seeds']} | {s['median_n']:.0f} | {s['observed_below']} | {s['expected_below_redraw']:.2f} | {s['p_none_below_redraw']:.2f} "
              f"| {s['expected_below_null']:.2f} | {s['p_none_below_null']:.2f} |")
    worst = sorted(records, key=lambda r: r["delta"])[:5]
    print("\nLowest row-seeds: " + "; ".join(f"{r['corpus']} {r['mode']} row {r['row']} seed {r['seed']} folds {r['folds']} Δ {r['delta']:+.4f} (n {r['n']}, p_redraw {r['p_redraw']:.2f})" for r in worst))


if __name__ == "__main__":
    main()
