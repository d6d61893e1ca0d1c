"""benchmarks/row_bar_noise.py: how often a re-drawn evaluation set would put a row-seed below
frozen − 0.005 (quoted in docs/protocol.md, "Summary across corpora"). Checked on synthetic
results whose answers are known in closed form."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_dir = Path(__file__).resolve().parents[1] / "benchmarks"
_spec = importlib.util.spec_from_file_location("row_bar_noise", _dir / "row_bar_noise.py")
rbn = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rbn)  # type: ignore[union-attr]


def test_chance_below_bootstrap_and_sign_flip_match_closed_forms():
    rng = np.random.default_rng(0)
    const = np.full(4, -0.01)
    # every bootstrap mean of a constant −0.01 is −0.01 < −0.005
    assert rbn.chance_below(const, null=False, n_draws=2000, rng=rng) == 1.0
    # sign flips of four ±0.01: the mean is below −0.005 only when all four are negative, 1/16
    assert rbn.chance_below(const, null=True, n_draws=40_000, rng=rng) == pytest.approx(1 / 16, abs=0.006)
    assert rbn.chance_below(np.full(4, +0.01), null=False, n_draws=2000, rng=rng) == 0.0


def _result(with_ids: bool = True) -> dict:
    # seed 0, two folds: fold 0 evaluates a, b, c (c is a near-duplicate, not headline), fold 1 d, e
    protocol = [{"seed": 0, "fold": 0, "n_eval_near_dup": 1}, {"seed": 0, "fold": 1, "n_eval_near_dup": 0}]
    if with_ids:
        protocol[0].update(eval_ids=["a", "b", "c"], near_dup_ids=["c"])
        protocol[1].update(eval_ids=["d", "e"], near_dup_ids=[])
    frozen = {"0": {q: 0.5 for q in "abcde"}}
    cycle = {"0": {"a": 0.48, "b": 0.48, "c": 0.9, "d": 0.52, "e": 0.52}}
    mode = {"pretrained": None, "cycles": [{"per_query_ndcg@10": frozen}, {"per_query_ndcg@10": cycle}]}
    return {"runs": {"none": {"corpora": {"cacm": {"protocol_per_seed": protocol, "modes": {"baseline": mode}}}}}}


def test_row_seeds_per_fold_and_both_on_the_headline_stratum():
    recs = {r["folds"]: r for r in rbn.row_seeds(_result(), n_draws=500)}
    assert set(recs) == {"0", "1", "both"}
    assert (recs["0"]["n"], recs["0"]["delta"]) == (2, pytest.approx(-0.02))  # c left out
    assert (recs["1"]["n"], recs["1"]["delta"]) == (2, pytest.approx(+0.02))
    assert (recs["both"]["n"], recs["both"]["delta"]) == (4, pytest.approx(0.0))
    assert recs["0"]["p_redraw"] == 1.0 and recs["1"]["p_redraw"] == 0.0
    s = rbn.summarise(list(recs.values()))
    assert s[("none", "0")]["observed_below"] == 1 and s[("none", "1")]["observed_below"] == 0
    assert s[("none", "0")]["p_none_below_redraw"] == 0.0 and s[("none", "1")]["p_none_below_redraw"] == 1.0


def test_a_result_without_evaluation_ids_is_named_never_scored_on_a_guess():
    with pytest.raises(ValueError, match="cacm"):
        rbn.row_seeds(_result(with_ids=False))
    skipped: list[str] = []
    assert rbn.row_seeds(_result(with_ids=False), skipped=skipped) == []
    assert skipped == ["none/cacm"]
