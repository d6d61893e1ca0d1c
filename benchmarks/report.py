"""Render a benchmark result JSON as the markdown tables used in docs/ (the same rows as the
CLI table: ``antigravity.harness.benchmark.table_rows`` / ``summary_rows``).

    python benchmarks/report.py results/suite_L3_L6.json
"""

from __future__ import annotations

import json
import sys

from antigravity.harness.benchmark import SUMMARY_COLUMNS, TABLE_COLUMNS, summary_rows, table_rows


def _md(columns, rows) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |", *("| " + " | ".join(r) + " |" for r in rows)]


def render(result: dict) -> str:
    lines = [f"student `{result['student']}`, teacher `{result['teacher']}`, seeds {result['seeds']}, cycles {result['cycles']}, pseudo-queries {result.get('pseudo_queries', 0)}; headline stratum `{result['headline_stratum']}`; p = paired t, Holm-corrected across the run.", ""]
    for lb, run in result["runs"].items():
        for name, corpus in run["corpora"].items():
            p = corpus["protocol_per_seed"]
            lines += [f"**{name}**, labels `{lb}` ({corpus['n_docs']} docs, {corpus['n_queries_eval']} evaluation queries, split `{corpus['split_kind']}`{', cross-fitted: 2 folds per seed' if corpus.get('folds', 1) > 1 else ''}, traffic {p[0]['n_traffic']} + {p[0]['n_pseudo']} pseudo-queries, dev {p[0]['n_dev']}, near-duplicate evaluation queries per seed{' and fold' if corpus.get('folds', 1) > 1 else ''} {[x['n_eval_near_dup'] for x in p]}, exact duplicates dropped{' per seed and fold' if corpus.get('folds', 1) > 1 else ''} {[x['n_dropped_exact_duplicates'] for x in p]})", ""]
            lines += _md(TABLE_COLUMNS, table_rows(corpus)) + [""]
        lines += [f"**Summary**, labels `{lb}` (stratum `{run['summary']['stratum']}`; held = within ± {run['summary']['tolerance']})", ""]
        lines += _md(SUMMARY_COLUMNS, summary_rows(run["summary"])) + [""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(json.load(open(sys.argv[1]))))
