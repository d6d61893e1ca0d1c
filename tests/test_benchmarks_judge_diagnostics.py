"""benchmarks/judge_diagnostics.py scores label-free promotion rules against the sign of the
test change; the numbers it prints are quoted in docs/distillation.md, so its scoring, the
sign test and the loader are checked here against hand-computed values."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from scipy.stats import binomtest

_dir = Path(__file__).resolve().parents[1] / "benchmarks"
_spec = importlib.util.spec_from_file_location("judge_diagnostics", _dir / "judge_diagnostics.py")
jd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(jd)  # type: ignore[union-attr]


def _d(test, judge, p, promoted=None, wl=None, **kw):
    d = {"delta_no_near_dup": test, "gate_delta": judge, "gate_p": p, "promoted": judge > 0 and p < 0.2 if promoted is None else promoted, "correct": True}
    if wl is not None:
        d["gate_risk"] = {"wins_losses": wl}
    return {**d, **kw}


def test_score_counts_right_decisions_material_ones_and_what_promotions_bought():
    ds = [
        _d(+0.02, +0.01, 0.01),   # promoted, gained: right, material
        _d(-0.01, +0.01, 0.01),   # promoted, lost 0.01: wrong, material, promoted & worse
        _d(+0.001, -0.01, 0.9),   # rejected a tiny gain: wrong, not material
        _d(-0.003, +0.01, 0.5),   # rejected (p too large), lost: right
    ]
    s = jd.score(ds, lambda d: d["gate_delta"] > 0 and d["gate_p"] < 0.2)
    assert s["n"] == 4 and s["accuracy"] == 0.5
    assert (s["material_n"], s["material_accuracy"]) == (2, 0.5)
    assert (s["promoted"], s["promoted_and_worse"]) == (2, 1)
    assert s["promoted_sum_delta"] == pytest.approx(0.01)
    assert jd.score(ds, lambda d: False)["accuracy"] == 0.5 and jd.score(ds, lambda d: True)["promoted_and_worse"] == 1


def test_sign_test_is_scipys_one_sided_binomial_and_unknown_counts_never_promote():
    assert jd._sign_p(_d(0, 0, 1, wl=[116, 105])) == pytest.approx(binomtest(116, 221, 0.5, alternative="greater").pvalue)
    assert jd._sign_p(_d(0, 0, 1)) == 1.0 and jd._sign_p(_d(0, 0, 1, wl=[0, 0])) == 1.0
    rules = jd.rules()
    assert rules["sign test on judged wins/losses"](_d(0, 0.01, 0.01, wl=[30, 10])) is True
    assert rules["sign test on judged wins/losses"](_d(0, 0.01, 0.01)) is False  # not recorded: never promotes
    assert rules["judge (t-test) and sign test"](_d(0, -0.01, 0.01, wl=[30, 10])) is False


def test_decisions_reads_one_label_setting_and_skips_unscored_ones(tmp_path):
    mode = {"decisions": [_d(0.01, 0.01, 0.01, stage="cycle 1", seed=0), {**_d(0.01, 0.01, 0.01), "correct": None}, {"correct": True, "gate_delta": None}]}
    res = {"runs": {"none": {"corpora": {"cacm": {"modes": {"hybrid": mode}}}}, "dev": {"corpora": {"cacm": {"modes": {"hybrid": mode}}}}}}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(res))
    ds = jd.decisions([str(path)], "none")
    assert len(ds) == 1 and ds[0]["corpus"] == "cacm" and ds[0]["mode"] == "hybrid"
    assert jd.decisions([str(path)], "absent") == []


def test_shallow_judge_rules_read_the_recorded_depth_and_never_promote_without_it():
    rules = jd.rules()
    d = _d(0.0, 0.01, 0.01, gate_also={"teacher@3": {"delta": -0.01, "p": 0.9}, "teacher@1": {"delta": 0.02, "p": 0.01}})
    assert rules["shallow judge: top 1 only"](d) is True and rules["shallow judge: top 3 only"](d) is False
    assert rules["judge and top-3 judge Δ ≥ 0"](d) is False
    old = _d(0.0, 0.01, 0.01)  # results recorded before the shallow judges existed
    assert not rules["shallow judge: top 1 only"](old) and not rules["judge and top-3 judge Δ ≥ 0"](old)


def test_fused_judge_rule_decides_teacher_judged_decisions_only():
    rule = jd.rules()["RRF(teacher, BM25) judge"]
    fused = {jd.FUSED: {"delta": -0.002, "p": 0.7}}
    teacher = _d(0.0, 0.01, 0.01, reason="promoted: judge_teacher_ndcg@10 …", gate_also=fused)
    assert rule(teacher) is False  # the teacher said better, the fused judge did not
    assert rule({**teacher, "gate_also": {jd.FUSED: {"delta": 0.003, "p": 0.1}}}) is True
    assert rule({**teacher, "gate_also": {}}) is False  # recorded before the fused judge existed: never promotes
    bm25 = _d(0.0, 0.01, 0.01, reason="promoted: judge_bm25_ndcg@10 …", gate_also=fused)
    assert rule(bm25) is True and rule({**bm25, "gate_p": 0.5}) is False  # no teacher: the BM25 judge as run
