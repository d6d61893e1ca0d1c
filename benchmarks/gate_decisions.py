"""The label-free gate's decisions in benchmark results, broken down: decision accuracy (does
promote/reject match the sign of the headline-stratum test change?) per stage (offline
pre-training vs cycles), per mode and per corpus, and restricted to material changes
(|Δ| ≥ 0.005, where the sign is not noise), with what a gate that always rejects would score,
and the candidates' own test changes (how many rose, mean, lowest).

    python benchmarks/gate_decisions.py results/protocol/scifact_L3_L6.json results/protocol/suite_L3_L6.json --labels none
    python benchmarks/gate_decisions.py results/protocol/gate_power/{med,cacm,npl,lisa,time,scifact_none}_L3_L6.json --labels none --what-if

The "95 % interval" column is a cluster bootstrap (Efron & Tibshirani 1993, ch. 6; resampling
whole clusters as in Field & Welsh, JRSS-B 2007): decisions that share a split — one results
file, corpus, fold and seed, every mode and stage — are resampled together, because a
pre-training and the cycles after it, and the modes run on one split, are not independent.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict


def decisions(path: str, labels: str):
    run = json.load(open(path))["runs"].get(labels, {})
    for corpus, res in run.get("corpora", {}).items():
        for mode, m in res["modes"].items():
            for d in m.get("decisions", []):
                if d.get("correct") is not None:
                    yield corpus, mode, d


def cluster(d: dict) -> tuple:
    """The split a decision belongs to: ``(results file, corpus, fold, seed)``."""
    return d.get("run"), d.get("corpus"), d.get("fold"), d.get("seed")


def accuracy_interval(ds: list[dict], n_boot: int = 10_000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of decision accuracy (share of ``d["correct"]``) by a cluster
    bootstrap over :func:`cluster`: ``n_boot`` resamples of the clusters with replacement,
    each scored as correct decisions / decisions in the resample. Deterministic for a
    ``seed``. One cluster (or none) gives ``(nan, nan)``: there is nothing to resample."""
    import numpy as np

    groups: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for d in ds:
        g = groups[cluster(d)]
        g[0] += bool(d["correct"])
        g[1] += 1
    if len(groups) < 2:
        return float("nan"), float("nan")
    right, n = np.array(list(groups.values()), dtype=float).T
    pick = np.random.default_rng(seed).integers(0, len(n), size=(n_boot, len(n)))
    acc = right[pick].sum(1) / n[pick].sum(1)
    lo, hi = np.quantile(acc, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+")
    ap.add_argument("--labels", default="none")
    ap.add_argument("--material", type=float, default=0.005)
    ap.add_argument("--what-if", action="store_true", help="also score other promotion thresholds on the same decisions")
    args = ap.parse_args()
    groups: dict[str, list] = defaultdict(list)
    for path in args.results:
        for corpus, mode, d in decisions(path, args.labels):
            stage = "pretrain" if d["stage"] == "pretrain" else "cycle"
            m = mode.split("@")[0]
            d = {**d, "corpus": corpus, "run": path}
            for key in ("all", f"stage={stage}", f"mode={m}", f"stage={stage},mode={m}", f"corpus={corpus}", f"corpus={corpus},mode={m}"):
                groups[key].append(d)
    print("| decisions | n | accuracy | 95 %% interval | always-reject accuracy | promoted | promoted & worse | promoted & Δ < −%.3f | n with abs(Δ) ≥ %.3f | accuracy there | candidates Δ > 0 | mean Δ | lowest Δ |" % (args.material, args.material))
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for key in sorted(groups, key=lambda k: (k != "all", k)):
        ds = groups[key]
        delta = [d["delta_no_near_dup"] for d in ds]
        mat = [d for d, x in zip(ds, delta) if abs(x) >= args.material]
        acc = sum(d["correct"] for d in ds) / len(ds)
        rej = sum(x <= 0 for x in delta) / len(ds)
        acc_m = (sum(d["correct"] for d in mat) / len(mat)) if mat else float("nan")
        worse = sum(1 for d, x in zip(ds, delta) if d["promoted"] and x < 0)
        bad = sum(1 for d, x in zip(ds, delta) if d["promoted"] and x < -args.material)
        lo, hi = accuracy_interval(ds)
        print(f"| {key} | {len(ds)} | {acc:.2f} ({sum(d['correct'] for d in ds)}) | {lo:.2f}–{hi:.2f} | {rej:.2f} | {sum(d['promoted'] for d in ds)} | {worse} | {bad} | {len(mat)} | {acc_m:.2f} "
              f"| {sum(x > 0 for x in delta)} | {sum(delta) / len(delta):+.4f} | {min(delta):+.4f} |")
    if args.what_if:
        what_if(groups["all"])


JUDGE = re.compile(r"(judge_\w+)[^Δ]*\(Δ ([-+]?\d+\.\d+), one-sided p ([\d.e-]+)")


def what_if(ds: list[dict]) -> None:
    """The same decisions under other promotion thresholds on the judge's Δ and one-sided p
    (the decision's ``gate_delta``/``gate_p``, or read back from its ``reason`` in older results): accuracy, promotions, and promotions whose
    headline test change fell below -0.005 (the issue's worst-row bar). Also the rank
    correlation of the judge's Δ with the test change, per judge and stage."""
    from scipy.stats import spearmanr

    rows = []
    for d in ds:
        m = JUDGE.search(d.get("reason", ""))  # the judge's name; its statistics too in results written before gate_delta/gate_p were recorded
        if m:
            j, p = (d["gate_delta"], d["gate_p"]) if "gate_delta" in d else (float(m.group(2)), float(m.group(3)))
            rows.append({"judge": m.group(1), "j": j, "p": p, "t": d["delta_no_near_dup"], "promoted": d["promoted"], "corpus": d.get("corpus"),
                         "stage": "pretrain" if d["stage"] == "pretrain" else "cycle"})
    if not rows:
        return
    print(f"\nWhat-if ({len(rows)} decisions with a judge statistic in their reason)\n")
    rules = {"as run (the recorded decisions)": lambda r: r["promoted"], "Δ > 0 and p < 0.05": lambda r: r["j"] > 0 and r["p"] < 0.05,
             "Δ > 0 and p < 0.1": lambda r: r["j"] > 0 and r["p"] < 0.1, "Δ > 0 and p < 0.2": lambda r: r["j"] > 0 and r["p"] < 0.2,
             "Δ > 0 and p < 0.3": lambda r: r["j"] > 0 and r["p"] < 0.3,
             "Δ > 0": lambda r: r["j"] > 0, "never promote": lambda r: False}
    corpora = sorted({r["corpus"] for r in rows})
    print("| rule | accuracy | promoted | promoted & test Δ < -0.005 | " + " | ".join(f"{c} right" for c in corpora) + " |")
    print("| --- | --- | --- | --- | " + " | ".join("---" for _ in corpora) + " |")
    for name, rule in rules.items():
        ok = [bool(rule(r)) == (r["t"] > 0) for r in rows]
        per = " | ".join(f"{sum(o for o, r in zip(ok, rows) if r['corpus'] == c)}/{sum(r['corpus'] == c for r in rows)}" for c in corpora)
        print(f"| {name} | {sum(ok) / len(rows):.2f} ({sum(ok)}) | {sum(bool(rule(r)) for r in rows)} | {sum(1 for r in rows if rule(r) and r['t'] < -0.005)} | {per} |")
    print("\n| judge, stage | n | Spearman ρ (judge Δ, test Δ) | sign agreement |")
    print("| --- | --- | --- | --- |")
    groups: dict[str, list] = defaultdict(list)
    for r in rows:
        for key in ("all", r["judge"], r["stage"], f"{r['judge']}, {r['stage']}"):
            groups[key].append(r)
    for key in sorted(groups, key=lambda k: (k != "all", k)):
        g = groups[key]
        rho = spearmanr([r["j"] for r in g], [r["t"] for r in g]).correlation if len(g) > 2 else float("nan")
        print(f"| {key} | {len(g)} | {rho:.2f} | {sum((r['j'] > 0) == (r['t'] > 0) for r in g) / len(g):.2f} |")


if __name__ == "__main__":
    main()
