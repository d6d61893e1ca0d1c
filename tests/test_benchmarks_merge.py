"""benchmarks/merge_results.py joins per-corpus result files into the suite files the docs
quote: it must refuse parts run differently (a cross-fitted part beside a single-half one
would mix two protocols in one summary)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("merge_results", Path(__file__).resolve().parents[1] / "benchmarks" / "merge_results.py")
mr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mr)  # type: ignore[union-attr]


def _part(**kw):
    return {"student": "s", "teacher": "t", "seeds": [0, 1, 2], "cycles": 2, "pseudo_queries": 300, "modes": ["baseline"], "runs": {}, **kw}


@pytest.mark.parametrize("change", [{"cross_fit": True}, {"seeds": [0]}, {"teacher": "u"}])
def test_parts_run_differently_are_refused(change):
    key = next(iter(change))
    with pytest.raises(ValueError, match=key):
        mr.merge([_part(), _part(**change)])


def test_results_without_the_cross_fit_key_merge_with_single_half_ones():
    assert mr.merge([_part(), _part(cross_fit=False)])["runs"] == {}


def test_parts_run_under_different_settings_are_refused_and_the_record_is_kept():
    lexical = {"teacher.lexical_fusion": True, "gate.alpha": 0.2}
    with pytest.raises(ValueError, match=r"settings \(teacher.lexical_fusion: False vs True\)"):
        mr.merge([_part(settings={**lexical, "teacher.lexical_fusion": False}), _part(settings=lexical)])
    # a part from before the record existed merges; the merged result keeps the record it has
    assert mr.merge([_part(), _part(settings=lexical)])["settings"] == lexical
    assert "settings" not in mr.merge([_part(), _part()])
