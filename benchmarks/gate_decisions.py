"""The label-free gate's decisions in benchmark results, broken down: decision accuracy (does
promote/reject match the sign of the headline-stratum test change?) per stage (offline
pre-training vs cycles) and per mode, and restricted to material changes (|Δ| ≥ 0.005,
where the sign is not noise), with what a gate that always rejects would score.

    python benchmarks/gate_decisions.py results/protocol/scifact_L3_L6.json results/protocol/suite_L3_L6.json --labels none
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict


def decisions(path: str, labels: str):
    run = json.load(open(path))["runs"].get(labels, {})
    for corpus, res in run.get("corpora", {}).items():
        for mode, m in res["modes"].items():
            for d in m.get("decisions", []):
                if d.get("correct") is not None:
                    yield corpus, mode, d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+")
    ap.add_argument("--labels", default="none")
    ap.add_argument("--material", type=float, default=0.005)
    args = ap.parse_args()
    groups: dict[str, list] = defaultdict(list)
    for path in args.results:
        for corpus, mode, d in decisions(path, args.labels):
            stage = "pretrain" if d["stage"] == "pretrain" else "cycle"
            for key in ("all", f"stage={stage}", f"mode={mode.split('@')[0]}", f"stage={stage},mode={mode.split('@')[0]}"):
                groups[key].append(d)
    print("| decisions | n | accuracy | always-reject accuracy | promoted | promoted & worse | n with abs(Δ) ≥ %.3f | accuracy there |" % args.material)
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for key in sorted(groups, key=lambda k: (k != "all", k)):
        ds = groups[key]
        delta = [d["delta_no_near_dup"] for d in ds]
        mat = [d for d, x in zip(ds, delta) if abs(x) >= args.material]
        acc = sum(d["correct"] for d in ds) / len(ds)
        rej = sum(x <= 0 for x in delta) / len(ds)
        acc_m = (sum(d["correct"] for d in mat) / len(mat)) if mat else float("nan")
        worse = sum(1 for d, x in zip(ds, delta) if d["promoted"] and x < 0)
        print(f"| {key} | {len(ds)} | {acc:.2f} | {rej:.2f} | {sum(d['promoted'] for d in ds)} | {worse} | {len(mat)} | {acc_m:.2f} |")


if __name__ == "__main__":
    main()
