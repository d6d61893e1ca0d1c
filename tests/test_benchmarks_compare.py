"""benchmarks/compare_results.py guards the numbers written in docs/ against re-runs: it must
find every changed per-seed Δ, every flipped gate decision and every missing part, and
nothing when the results are equal."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("compare_results", Path(__file__).resolve().parents[1] / "benchmarks" / "compare_results.py")
cmp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cmp)  # type: ignore[union-attr]


def _result():
    def row(cycle, d):
        return {"cycle": cycle, "strata": {"no_near_dup": {"delta_per_seed": {"0": d, "1": d / 2}}, "near_dup": {"delta_per_seed": {"0": 0.0}}}}

    mode = {"pretrained": row("pretrained", 0.05), "cycles": [row(0, 0.0), row(1, 0.01)], "decisions": [{"promoted": True}, {"promoted": False}]}
    return {"runs": {"none": {"corpora": {"cacm": {"modes": {"offline": mode, "baseline": copy.deepcopy(mode)}}}}}}


def test_equal_results_match_and_every_value_is_counted():
    n, worst, bad = cmp.compare(_result(), _result())
    assert bad == [] and worst == 0.0
    assert n == 2 * (3 * 3 + 2)  # two modes × (three rows × three per-seed values + two decisions)


def test_a_changed_delta_a_flipped_decision_and_a_missing_mode_are_each_reported():
    b = _result()
    m = b["runs"]["none"]["corpora"]["cacm"]["modes"]
    m["offline"]["cycles"][1]["strata"]["no_near_dup"]["delta_per_seed"]["1"] += 1e-6
    m["offline"]["decisions"][1]["promoted"] = True
    del m["baseline"]
    n, worst, bad = cmp.compare(_result(), b)
    assert abs(worst - 1e-6) < 1e-12
    assert any("offline 1 no_near_dup seed 1" in x for x in bad)
    assert any("offline: gate decisions differ" in x for x in bad)
    assert any("baseline: missing" in x for x in bad)
    assert len(bad) == 3
    assert cmp.compare(_result(), b, atol=1e-5)[2] != []  # the decision and the missing mode still count


def test_a_cross_fitted_result_is_not_compared_with_a_single_half_one():
    n, _, bad = cmp.compare(_result(), {**_result(), "cross_fit": True})
    assert n == 0 and len(bad) == 1 and "different protocols" in bad[0]


def test_results_run_under_different_settings_are_reported():
    lexical = {**_result(), "settings": {"teacher.lexical_fusion": True, "gate.alpha": 0.2}}
    _, _, bad = cmp.compare({**_result(), "settings": {"teacher.lexical_fusion": False, "gate.alpha": 0.2}}, lexical)
    assert len(bad) == 1 and "different settings" in bad[0] and "teacher.lexical_fusion: False vs True" in bad[0] and "alpha" not in bad[0]
    assert cmp.compare(_result(), lexical)[2] == []  # a result from before the record existed: the values decide
