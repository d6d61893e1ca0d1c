"""Render a benchmark result JSON as the markdown table used in docs/.

    python benchmarks/report.py results/scifact_quick_pair.json
"""

from __future__ import annotations

import json
import sys


def fmt(row: dict, m: str) -> str:
    s = f"{row[m]:.4f}"
    if "std" in row:
        s += f" ± {row['std'][m]:.4f}"
    return s


def render(result: dict) -> str:
    lines = [
        f"SciFact {result['split']} ({result['n_queries_eval']} queries, {result['n_docs']} docs); student `{result['student']}`, "
        f"teacher `{result['teacher']}`, seeds {result['seeds']}; adaptation traffic = {result['n_queries_adapt']} TRAIN query texts, "
        f"gate dev = {result.get('n_queries_dev')} other TRAIN queries with qrels.",
        "",
        "| mode | stage | NDCG@10 | Recall@100 | MRR@10 | Δ NDCG@10 vs frozen | paired t p | per-seed NDCG@10 | gate |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for mode, res in result["modes"].items():
        base = res["cycles"][0]
        rows = [("frozen student", base)]
        if res.get("pretrained"):
            rows.append(("offline pre-trained", res["pretrained"]))
        rows += [(f"cycle {r['cycle']}", r) for r in res["cycles"][1:]]
        for label, row in rows:
            pt = row.get("paired_vs_cycle0")
            per = row.get("per_seed")
            per_s = " / ".join(f"{v['ndcg@10']:.4f}" for v in per.values()) if per else ""
            gate = row.get("gate")
            if isinstance(gate, list):
                gate = "; ".join(str(g).split(":")[0] for g in gate)
            elif gate:
                gate = str(gate).split(":")[0]
            delta = "" if row is base else f"{row['ndcg@10'] - base['ndcg@10']:+.4f}"
            p = "" if not pt else f"{pt['p']:.3g}"
            lines.append(
                f"| {mode} | {label} | {fmt(row, 'ndcg@10')} | {fmt(row, 'recall@100')} | {fmt(row, 'mrr@10')} | {delta} | {p} | {per_s} | {gate or ''} |"
            )
    lines.append("")
    for mode, res in result["modes"].items():
        pre = res.get("pretraining_time_s")
        sed = [r.get("sediment_time_s", 0.0) for r in res["cycles"][1:]]
        lines.append(
            f"- {mode}: pre-training {pre:.1f} s; " if pre else f"- {mode}: "
        )
        lines[-1] += f"cycle times (traffic excluded, mean over seeds) {', '.join(f'{t:.1f} s' for t in sed) or 'n/a'}"
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(json.load(open(sys.argv[1]))))
