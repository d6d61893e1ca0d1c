"""Before/after table for the label-free gate's judged-text top-up (``gate.min_judged_texts``):
per corpus and over all, the label-free gate's decision accuracy (promote/reject vs the sign of
the headline-stratum test change), the worst per-seed Δ NDCG@10 of any adapted row of any
mode, the offline mode's mean Δ (pre-trained row and last cycle), the decisions promoted, and
the mean number of texts judged per decision (traffic + pseudo-queries).

    python benchmarks/gate_power.py --before results/protocol/parts/{med,cacm,npl,lisa,time}_L3_L6.json \\
        --after results/protocol/gate_power/{med,cacm,npl,lisa,time}_L3_L6.json
"""

from __future__ import annotations

import argparse
import json
import re

import numpy as np


def corpora(paths: list[str], labels: str):
    for path in paths:
        run = json.load(open(path))["runs"].get(labels, {})
        yield from run.get("corpora", {}).items()


def stats(res: dict) -> dict:
    decisions = [d for m in res["modes"].values() for d in m.get("decisions", []) if d.get("correct") is not None]
    worst = min((d for m in res["modes"].values() for row in [m.get("pretrained"), *m["cycles"][1:]] if row for d in row["strata"]["no_near_dup"].get("delta_per_seed", {}).values()), default=None)
    off = res["modes"].get("offline", {})
    judged = [d["judged_texts"] for d in decisions if d.get("judged_texts")]
    ns = [int(m.group(1)) for d in decisions for m in [re.search(r"\bn (\d+)[;)]", d["reason"]) or re.search(r": (\d+) held-out queries", d["reason"])] if m]
    return {
        "n": len(decisions), "correct": sum(d["correct"] for d in decisions), "promoted": sum(d["promoted"] for d in decisions),
        "promoted_worse": sum(1 for d in decisions if d["promoted"] and d["delta_no_near_dup"] < 0),
        "worst": worst,
        "offline_pre": off.get("pretrained", {}).get("strata", {}).get("no_near_dup", {}).get("delta") if off else None,
        "offline_last": off["cycles"][-1]["strata"]["no_near_dup"].get("delta") if off else None,
        "traffic": float(np.mean([j["traffic"] for j in judged])) if judged else None,
        "pseudo": float(np.mean([j["pseudo"] for j in judged])) if judged else None,
        "n_judged": float(np.mean(ns)) if ns else None,
    }


def fmt(x, spec="+.4f"):
    return "–" if x is None else format(x, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", nargs="+", required=True)
    ap.add_argument("--after", nargs="+", required=True)
    ap.add_argument("--labels", default="none")
    args = ap.parse_args()
    before, after = dict(corpora(args.before, args.labels)), dict(corpora(args.after, args.labels))
    print("| corpus | run | decisions correct | promoted (& worse) | worst Δ (any row, seed) | offline Δ pre-trained | offline Δ last cycle | texts per decision: traffic + pseudo | judged (with a judgment) per decision |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    tot = {"before": [0, 0, 0, 0], "after": [0, 0, 0, 0]}
    for name in [c for c in before if c in after]:
        for tag, res in (("before", before[name]), ("after", after[name])):
            s = stats(res)
            t = tot[tag]
            t[0] += s["correct"]; t[1] += s["n"]; t[2] += s["promoted"]; t[3] += s["promoted_worse"]
            judged = "–" if s["traffic"] is None else f"{s['traffic']:.0f} + {s['pseudo']:.0f}"
            print(f"| {name} | {tag} | {s['correct']}/{s['n']} ({s['correct'] / max(s['n'], 1):.2f}) | {s['promoted']} ({s['promoted_worse']}) | {fmt(s['worst'])} | {fmt(s['offline_pre'])} | {fmt(s['offline_last'])} | {judged} | {fmt(s['n_judged'], '.0f')} |")
    for tag, t in tot.items():
        print(f"| **all** | {tag} | {t[0]}/{t[1]} ({t[0] / max(t[1], 1):.2f}) | {t[2]} ({t[3]}) | | | | | |")


if __name__ == "__main__":
    main()
