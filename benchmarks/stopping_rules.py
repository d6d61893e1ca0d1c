"""Label-free early-stopping rules for offline distillation, compared on recorded curves.

Input: benchmark results of offline pre-training run for all epochs
(``ANTIGRAVITY_TEACHER__DISTILL_PATIENCE=1000``) with ``ANTIGRAVITY_GATE__DIAGNOSTICS=true``, so
each pre-training decision holds ``stopping_curve`` (the judge's score of the stopping half
after each epoch — what early stopping sees) and ``watched_curve`` (the judge's score of the
other, deciding half — what the gate would judge; never used to stop). Both are label-free:
the teacher's top-10 as graded pseudo-relevance on held-out texts. No test score is read.

Each rule replays early stopping on ``stopping_curve`` and is scored by the deciding half's
gain at the epoch it keeps (``watched_curve[e]`` minus the served version's score on that
half, from the decision), per corpus and seed.

    python benchmarks/stopping_rules.py results/protocol/stopping/{scifact,med,cacm,npl,lisa,time}_L3_L6.json
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np


def curves(paths: list[str]) -> list[dict]:
    out = []
    for p in paths:
        res = json.loads(Path(p).read_text())
        for labels, run in res["runs"].items():
            for corpus, c in run["corpora"].items():
                for d in c["modes"].get("offline", {}).get("decisions", []):
                    if d["stage"] != "pretrain" or not d.get("watched_curve"):
                        continue
                    m = re.search(r"@10 ([\d.]+) ->", d["reason"])
                    out.append({"corpus": corpus, "seed": d["seed"], "s": np.array(d["stopping_curve"]), "w": np.array(d["watched_curve"]), "w0": float(m.group(1))})
    return out


def patience_rule(p: int, smooth: int = 1):
    """Keep the first best epoch of the (trailing-mean ``smooth``) stopping curve; stop after
    ``p`` epochs without a better one (the product's rule is ``patience_rule(10)``)."""

    def rule(s: np.ndarray) -> int:
        if smooth > 1:
            s = np.array([s[max(0, i - smooth + 1) : i + 1].mean() for i in range(len(s))])
        best, best_e = -np.inf, -1
        for e, v in enumerate(s):
            if v > best:
                best, best_e = v, e
            if e - best_e >= p:
                break
        return best_e

    return rule


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+")
    args = ap.parse_args()
    cs = curves(args.results)
    rules = {f"patience {p}": patience_rule(p) for p in (5, 10, 20, 30, 50)}
    rules |= {f"patience {p}, mean of last 5": patience_rule(p, 5) for p in (10, 20, 30)}
    rules["all epochs (last)"] = lambda s: len(s) - 1
    rules["best of all epochs"] = patience_rule(10**6)
    corpora = sorted({c["corpus"] for c in cs})
    print(f"{len(cs)} pre-training runs ({', '.join(corpora)}); epochs run: {sorted({len(c['s']) for c in cs})}\n")
    print("| rule | mean deciding-half gain | worst | runs with gain ≤ 0 | mean epoch kept | " + " | ".join(corpora) + " |")
    print("| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in corpora) + " |")
    for name, rule in rules.items():
        ep = [rule(c["s"]) for c in cs]
        gain = np.array([c["w"][e] - c["w0"] for c, e in zip(cs, ep)])
        per = " | ".join(f"{np.mean([g for g, c in zip(gain, cs) if c['corpus'] == k]):+.4f}" for k in corpora)
        print(f"| {name} | {gain.mean():+.4f} | {gain.min():+.4f} | {int((gain <= 0).sum())}/{len(gain)} | {np.mean(ep):.1f} | {per} |")


if __name__ == "__main__":
    main()
