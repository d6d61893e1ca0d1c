"""Leave-one-corpus-out check of the three defaults chosen on the six development collections
(``gate.alpha``, ``teacher.weight``, ``teacher.distill_patience``): would the same selection
rule, run on five collections, have picked a setting that also serves the sixth — a corpus it
never saw? This is the nearest check to "corpora outside ../shared" that the recorded runs allow.

For each held-out corpus the setting is chosen on the other five by the criterion the global
choice used, then scored on the held-out corpus, beside the old default and the global choice:

* ``gate.alpha`` — decision accuracy (promote/reject vs the sign of the headline test change)
  of the recorded α-0.05 decisions re-thresholded at each level (``gate_decisions.py --what-if``;
  ties go to the smaller, more conservative level); also promotions that lost more than 0.005.
* ``teacher.weight`` — the mean headline test change of every hybrid candidate (promoted or
  not) at 0.5 vs 1.0.
* ``teacher.distill_patience`` — the deciding half's label-free judged gain at the epoch each
  patience keeps on the recorded full stopping curves (``stopping_rules.py``; no test score).

The test changes read here are those of the evaluation halves the global choice already used
(the issue's rule for defaults); nothing is tuned by this script.

    python benchmarks/loco_defaults.py \\
        --alpha-runs results/protocol/deploy_alpha005/{scifact,med,cacm,npl,lisa,time}_none_L3_L6.json \\
        --weight-half results/protocol/judges/{scifact_none,med,cacm,npl,lisa,time}_L3_L6.json \\
        --weight-one results/protocol/hybrid_w/{scifact,med,cacm,npl,lisa,time}_w1_L3_L6.json \\
        --stopping results/protocol/stopping/{scifact,med,cacm,npl,lisa,time}_L3_L6.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from judge_diagnostics import decisions, score  # noqa: E402
from stopping_rules import curves, patience_rule  # noqa: E402

ALPHAS = (0.05, 0.1, 0.2, 0.3, 1.0)
PATIENCES = (5, 10, 20, 30, 50)
MATERIAL = 0.005


def _alpha_score(ds: list[dict], a: float) -> tuple[int, int]:
    """(decisions right, promotions whose test change fell below −MATERIAL) at level ``a``
    (:func:`judge_diagnostics.score` of the gate's rule)."""
    s = score(ds, lambda d: d["gate_delta"] > 0 and d["gate_p"] < a, MATERIAL)
    return round(s["accuracy"] * s["n"]), s["promoted_and_worse"]


def loco_alpha(paths: list[str], old: float, now: float) -> None:
    ds = decisions(paths)
    corpora = sorted({d["corpus"] for d in ds})
    print(f"## gate.alpha — {len(ds)} recorded label-free decisions\n")
    print(f"| held out | n | α chosen on the other five | right at chosen | right at {old:g} (old) | right at {now:g} (global) | promoted & Δ < −{MATERIAL} at chosen |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    tot = np.zeros(3, int)
    for c in corpora:
        rest = [d for d in ds if d["corpus"] != c]
        held = [d for d in ds if d["corpus"] == c]
        chosen = max(ALPHAS, key=lambda a: (_alpha_score(rest, a)[0], -a))
        r = [_alpha_score(held, a)[0] for a in (chosen, old, now)]
        tot += r
        print(f"| {c} | {len(held)} | {chosen:g} | {r[0]} | {r[1]} | {r[2]} | {_alpha_score(held, chosen)[1]} |")
    n = len(ds)
    print(f"| all (held-out sums) | {n} | | {tot[0]} ({tot[0] / n:.2f}) | {tot[1]} ({tot[1] / n:.2f}) | {tot[2]} ({tot[2] / n:.2f}) | |\n")


def _hybrid_deltas(paths: list[str]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for d in decisions(paths):
        if d["mode"].startswith("hybrid"):
            out.setdefault(d["corpus"], []).append(d["delta_no_near_dup"])
    return out


def loco_weight(half: list[str], one: list[str]) -> None:
    by_w = {0.5: _hybrid_deltas(half), 1.0: _hybrid_deltas(one)}
    corpora = sorted(set(by_w[0.5]) & set(by_w[1.0]))
    print("## teacher.weight — mean headline test change of every hybrid candidate\n")
    print("| held out | candidates (0.5 / 1.0) | weight chosen on the other five | mean Δ at chosen | at 0.5 (old) | at 1.0 (global) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for c in corpora:
        rest = {w: np.mean([x for k in corpora if k != c for x in v[k]]) for w, v in by_w.items()}
        chosen = max(rest, key=lambda w: (rest[w], -w))
        m = {w: np.mean(v[c]) for w, v in by_w.items()}
        print(f"| {c} | {len(by_w[0.5][c])} / {len(by_w[1.0][c])} | {chosen:g} | {m[chosen]:+.4f} | {m[0.5]:+.4f} | {m[1.0]:+.4f} |")
    print()


def loco_patience(paths: list[str], old: int, now: int) -> None:
    cs = curves(paths)
    corpora = sorted({c["corpus"] for c in cs})
    gain = {p: {k: [] for k in corpora} for p in PATIENCES}
    for c in cs:
        for p in PATIENCES:
            gain[p][c["corpus"]].append(c["w"][patience_rule(p)(c["s"])] - c["w0"])
    print(f"## teacher.distill_patience — deciding-half judged gain at the kept epoch ({len(cs)} pre-training runs)\n")
    print(f"| held out | patience chosen on the other five | gain at chosen | at {old} (old) | at {now} (global) |")
    print("| --- | --- | --- | --- | --- |")
    for c in corpora:
        rest = {p: np.mean([x for k in corpora if k != c for x in gain[p][k]]) for p in PATIENCES}
        chosen = max(PATIENCES, key=lambda p: (rest[p], -p))
        m = {p: np.mean(gain[p][c]) for p in PATIENCES}
        print(f"| {c} | {chosen} | {m[chosen]:+.4f} | {m[old]:+.4f} | {m[now]:+.4f} |")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--alpha-runs", nargs="+", default=[])
    ap.add_argument("--weight-half", nargs="+", default=[])
    ap.add_argument("--weight-one", nargs="+", default=[])
    ap.add_argument("--stopping", nargs="+", default=[])
    args = ap.parse_args()
    if args.alpha_runs:
        loco_alpha(args.alpha_runs, old=0.05, now=0.2)
    if args.weight_half and args.weight_one:
        loco_weight(args.weight_half, args.weight_one)
    if args.stopping:
        loco_patience(args.stopping, old=10, now=20)


if __name__ == "__main__":
    main()
