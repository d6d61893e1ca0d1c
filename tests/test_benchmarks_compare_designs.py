"""benchmarks/compare_designs.py: two designs on the same splits, paired per evaluation query
(mean over the seeds that saw it), Holm across rows; refuses results of different protocols."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from scipy import stats

_spec = importlib.util.spec_from_file_location("compare_designs", Path(__file__).resolve().parents[1] / "benchmarks" / "compare_designs.py")
cd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cd)  # type: ignore[union-attr]


def _result(per_seed: dict[str, dict[str, float]], seeds=(0, 1), pretrained_only=False):
    row = {"per_query_ndcg@10": per_seed}
    mode = {"pretrained": row, "cycles": []} if pretrained_only else {"pretrained": None, "cycles": [{"per_query_ndcg@10": {s: {q: 0.0 for q in p} for s, p in per_seed.items()}}, row]}
    return {"seeds": list(seeds), "cross_fit": True, "runs": {"none": {"corpora": {"c": {"modes": {"offline": mode}, "protocol_per_seed": [{"n_eval_near_dup": 1}, {"n_eval_near_dup": 2}]}}}}}


def test_pairs_each_query_once_averaging_its_seeds():
    a = _result({"0": {"q1": 0.2, "q2": 0.4, "q3": 0.1}, "1": {"q1": 0.4, "q2": 0.4, "q3": 0.3}})
    b = _result({"0": {"q1": 0.5, "q2": 0.5, "q3": 0.2}, "1": {"q1": 0.5, "q2": 0.7, "q3": 0.2}})
    [row] = cd.compare(a, b)
    # per query means: A 0.3, 0.4, 0.2; B 0.5, 0.6, 0.2 (the last cycle's scores, not the first's)
    assert row["n"] == 3 and row["a"] == pytest.approx(0.3) and row["b"] == pytest.approx(1.3 / 3)
    assert row["delta"] == pytest.approx((0.2 + 0.2 + 0.0) / 3)
    assert row["p"] == pytest.approx(stats.ttest_rel([0.5, 0.6, 0.2], [0.3, 0.4, 0.2]).pvalue)
    assert row["p_holm"] == row["p"] and row["near_dup"] == 3  # one row: Holm changes nothing


def test_a_mode_without_cycles_is_compared_on_its_pretrained_row():
    a = _result({"0": {"q1": 0.2, "q2": 0.4}}, seeds=(0,), pretrained_only=True)
    b = _result({"0": {"q1": 0.3, "q2": 0.4}}, seeds=(0,), pretrained_only=True)
    assert cd.compare(a, b)[0]["delta"] == pytest.approx(0.05)


@pytest.mark.parametrize("change", ["seeds", "cross_fit", "queries", "seed_queries"])
def test_results_of_different_protocols_are_refused(change):
    a = _result({"0": {"q1": 0.2, "q2": 0.4}, "1": {"q1": 0.2, "q3": 0.4}})
    per = {"0": {"q1": 0.2, "q2": 0.4}, "1": {"q1": 0.2, "q3": 0.4}}
    if change == "queries":
        per = {"0": {"q1": 0.2, "q2": 0.4}, "1": {"q1": 0.2, "q4": 0.4}}
    if change == "seed_queries":  # the same queries overall, split differently between the seeds
        per = {"0": {"q1": 0.2, "q3": 0.4}, "1": {"q1": 0.2, "q2": 0.4}}
    b = _result(per)
    if change == "seeds":
        b["seeds"] = [0, 2]
    if change == "cross_fit":
        b["cross_fit"] = False
    with pytest.raises(ValueError, match="not the same"):
        cd.compare(a, b)
