"""What other label-free judges would have decided, from benchmark results run with
``ANTIGRAVITY_GATE__DIAGNOSTICS=true`` (``gate.diagnostics``: each decision records the judge's
gain per text source — held-out traffic vs corpus pseudo-queries — and, never decisive, BM25
beside a teacher judge and the known-item judge: does a pseudo-query's own document rise?).

Scores each rule's decision accuracy against the sign of the headline-stratum test change
(the protocol's definition, docs/protocol.md), overall, per corpus and on material changes
(|Δ| ≥ 0.005), with how many promoted candidates lost more than 0.005. Every rule reads only
what the gate saw; the test change is used only to score.

    python benchmarks/judge_diagnostics.py results/protocol/judges/{scifact_none,med,cacm,npl,lisa,time}_L3_L6.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from antigravity.adaptation.gates import BM25Judge, TeacherJudge, fused_name  # noqa: E402


def decisions(paths: list[str], labels: str = "none") -> list[dict]:
    """Every scored decision of the ``labels`` run in ``paths``, with corpus and mode."""
    out = []
    for p in paths:
        res = json.loads(Path(p).read_text())
        run = res["runs"].get(labels)
        if run is None:
            continue
        for corpus, c in run["corpora"].items():
            for mode, m in c["modes"].items():
                for d in m.get("decisions", []):
                    if d.get("correct") is None or d.get("gate_delta") is None:
                        continue
                    out.append({**d, "corpus": corpus, "mode": mode})
    return out


ALPHA = 0.2  # the gate's level (gate.alpha); --alpha changes it for every rule below


def _sig(stat: dict | None) -> bool:
    return bool(stat) and stat["delta"] > 0 and stat["p"] < ALPHA


def _nonneg(stat: dict | None) -> bool:
    return not stat or stat["delta"] >= 0


def rules() -> dict:
    """Label-free promotion rules over one decision's recorded statistics."""
    judge = lambda d: {"delta": d["gate_delta"], "p": d["gate_p"]}  # noqa: E731
    src = lambda d, s: (d.get("gate_by_source") or {}).get(s)  # noqa: E731
    also = lambda d, j: (d.get("gate_also") or {}).get(j)  # noqa: E731
    risk = lambda d, r: (d.get("gate_risk") or {}).get(f"{r:g}")  # noqa: E731  (None in results before it was recorded: never promotes)
    # the deciding judge at depth k (gates.SHALLOW_DEPTHS): the only "also" entries named "<judge>@k"
    shallow = lambda d, k: next((v for n, v in (d.get("gate_also") or {}).items() if n.endswith(f"@{k}")), None)  # noqa: E731
    return {
        "as run (the recorded decisions)": lambda d: d["promoted"],
        "judge Δ > 0, p < α": lambda d: _sig(judge(d)),
        "never promote": lambda d: False,
        "judge on held-out traffic only": lambda d: _sig(src(d, "traffic")),
        "judge on pseudo-queries only": lambda d: _sig(src(d, "pseudo")),
        "known-item judge": lambda d: _sig(also(d, "known_item")),
        "judge and known-item Δ ≥ 0": lambda d: _sig(judge(d)) and _nonneg(also(d, "known_item")),
        "judge and traffic Δ ≥ 0": lambda d: _sig(judge(d)) and _nonneg(src(d, "traffic")),
        "judge and BM25 Δ ≥ 0 (teacher decisions)": lambda d: _sig(judge(d)) and _nonneg(also(d, "bm25")),
        "judge or known-item": lambda d: _sig(judge(d)) or _sig(also(d, "known_item")),
        "judge, traffic and known-item Δ ≥ 0": lambda d: _sig(judge(d)) and _nonneg(src(d, "traffic")) and _nonneg(also(d, "known_item")),
        # risk-sensitive forms of the judge's gain (gates.risk_gain: losses weigh 1 + r; TRisk test)
        **{f"risk-sensitive judge, losses × {1 + r:g}": (lambda r: lambda d: _sig(risk(d, r)))(r) for r in (1, 2, 5)},
        "judge, and more judged texts rose than fell": lambda d: _sig(judge(d)) and (lambda wl: wl is None or wl[0] > wl[1])((d.get("gate_risk") or {}).get("wins_losses")),
        # the sign test on the judged texts that moved (wins vs losses; one-sided binomial): consistent direction, not size
        "sign test on judged wins/losses": lambda d: _sign_p(d) < ALPHA,
        "judge (t-test) and sign test": lambda d: _sig(judge(d)) and _sign_p(d) < ALPHA,
        # the same judge, only its top documents as pseudo-relevant (gates.SHALLOW_DEPTHS; recorded from session 10 on)
        "shallow judge: top 3 only": lambda d: _sig(shallow(d, 3)),
        "shallow judge: top 1 only": lambda d: _sig(shallow(d, 1)),
        "judge and top-3 judge Δ ≥ 0": lambda d: _sig(judge(d)) and shallow(d, 3) is not None and shallow(d, 3)["delta"] >= 0,
        # gate.min_gain 0.004: a round value above the judged gain of the one promoted loss of the L3 <- L6 runs (CACM hybrid, judged Δ +0.00353)
        "judge Δ > 0.004 (min_gain), p < α": lambda d: d["gate_delta"] > 0.004 and _sig(judge(d)),
        # the teacher fused with BM25 as the judge (gates.FusionJudge; recorded from session 11 on, never promotes
        # a teacher decision without it); BM25-judged decisions (no teacher) as run
        "RRF(teacher, BM25) judge": lambda d: _sig(also(d, FUSED)) if _teacher_judged(d) else _sig(judge(d)),
    }


FUSED = fused_name([TeacherJudge.name, BM25Judge.name])  # the teacher fused with BM25, as gates.FusionJudge records it


def _teacher_judged(d: dict) -> bool:
    """Was the decision's judge the teacher (its reason names the gate, e.g. ``judge_teacher_ndcg@10``)?"""
    return "judge_teacher" in d.get("reason", "")


def _sign_p(d: dict) -> float:
    """One-sided sign-test p of "more judged texts rose than fell" (scipy ``binomtest``); 1 when
    the decision did not record wins/losses."""
    wl = (d.get("gate_risk") or {}).get("wins_losses")
    if not wl or sum(wl) == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(wl[0], wl[0] + wl[1], 0.5, alternative="greater").pvalue)


def score(ds: list[dict], rule, material: float = 0.005) -> dict:
    ok = [rule(d) == (d["delta_no_near_dup"] > 0) for d in ds]
    mat = [o for o, d in zip(ok, ds) if abs(d["delta_no_near_dup"]) >= material]
    promoted = [d for d in ds if rule(d)]
    return {
        "n": len(ds),
        "accuracy": sum(ok) / len(ds) if ds else None,
        "material_n": len(mat),
        "material_accuracy": sum(mat) / len(mat) if mat else None,
        "promoted": len(promoted),
        "promoted_and_worse": sum(d["delta_no_near_dup"] < -material for d in promoted),
        "promoted_sum_delta": sum(d["delta_no_near_dup"] for d in promoted),  # what the promotions bought, summed (each candidate vs the version it replaced)
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+")
    ap.add_argument("--labels", default="none")
    ap.add_argument("--json", help="also write the table as JSON here")
    ap.add_argument("--differ", help="also list the decisions where this rule (a name from the table) and the gate as run disagree")
    ap.add_argument("--alpha", type=float, default=ALPHA, help="one-sided level of every 'significant gain' rule (default: the gate's, 0.2)")
    ap.add_argument("--fold", type=int, help="cross-fitted results: only this fold's decisions (1 = the halves no default was chosen on)")
    args = ap.parse_args()
    globals()["ALPHA"] = args.alpha
    ds = decisions(args.results, args.labels)
    if args.fold is not None:
        ds = [d for d in ds if d.get("fold", 0) == args.fold]
    corpora = sorted({d["corpus"] for d in ds})
    table = {}
    print(f"{len(ds)} decisions; corpora {corpora}; α = {ALPHA}\n")
    print("| rule | accuracy | material (|Δ| ≥ 0.005) | promoted | promoted & Δ < −0.005 | Σ Δ of the promoted | " + " | ".join(corpora) + " |")
    print("| --- | --- | --- | --- | --- | --- | " + " | ".join("---" for _ in corpora) + " |")
    for name, rule in rules().items():
        s = score(ds, rule)
        per = {c: score([d for d in ds if d["corpus"] == c], rule) for c in corpora}
        table[name] = {"all": s, "per_corpus": per}
        cells = " | ".join(f"{per[c]['accuracy']:.2f}" for c in corpora)
        print(f"| {name} | {s['accuracy']:.3f} ({s['n']}) | {s['material_accuracy']:.2f} ({s['material_n']}) | {s['promoted']} | {s['promoted_and_worse']} | {s['promoted_sum_delta']:+.3f} | {cells} |")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1))
    if args.differ:
        rule = rules()[args.differ]
        print(f"\nDecisions where '{args.differ}' and the gate as run disagree\n")
        print("| corpus | mode | stage | seed | fold | as run | rule | test Δ | judge Δ (p) | judged texts rose / fell | sign-test p |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for d in ds:
            if bool(rule(d)) != bool(d["promoted"]):
                wl = (d.get("gate_risk") or {}).get("wins_losses")
                print(f"| {d['corpus']} | {d['mode']} | {d['stage']} | {d['seed']} | {d.get('fold', 0)} | {'promote' if d['promoted'] else 'reject'} | {'promote' if rule(d) else 'reject'} "
                      f"| {d['delta_no_near_dup']:+.4f} | {d['gate_delta']:+.4f} ({d['gate_p']:.2g}) | {wl[0] if wl else ''} / {wl[1] if wl else ''} | {_sign_p(d):.2g} |")


if __name__ == "__main__":
    main()
