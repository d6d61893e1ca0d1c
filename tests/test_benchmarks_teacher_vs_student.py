"""benchmarks/teacher_vs_student.py scores judges' rankings as runs: a ranking must become a run
whose NDCG@10 is the ranking's own (rank order kept, padding dropped)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from antigravity.evaluation import evaluate_per_query

_spec = importlib.util.spec_from_file_location("teacher_vs_student", Path(__file__).resolve().parents[1] / "benchmarks" / "teacher_vs_student.py")
tvs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tvs)  # type: ignore[union-attr]


class _Fixed:
    name = "fixed"

    def rank(self, texts, k):
        rows = {"a": [2, 0, -1], "b": [-1, -1, -1]}
        return np.array([rows[t][:k] for t in texts])


def test_judge_run_keeps_the_ranking_order_and_drops_padding():
    run = tvs.judge_run(_Fixed(), ["qa", "qb"], ["a", "b"], ["d0", "d1", "d2"], k=3)
    assert run == {"qa": {"d2": 1.0, "d0": 0.5}, "qb": {}}
    per = evaluate_per_query({"qa": {"d0": 1}}, {"qa": run["qa"]})
    assert per["qa"]["ndcg@10"] == pytest.approx(1 / np.log2(3))  # the relevant document at rank 2
