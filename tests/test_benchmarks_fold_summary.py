"""benchmarks/fold_summary.py splits a cross-fitted result back into its folds (the numbers
docs/distillation.md quotes for "fold 1": halves never used to choose a default)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("fold_summary", Path(__file__).resolve().parents[1] / "benchmarks" / "fold_summary.py")
fs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fs)  # type: ignore[union-attr]


def _result(folds=2, near=0, ids=False):
    frozen = {"0": {"a": 0.5, "b": 0.5, "c": 0.2, "d": 0.4}}
    cycle1 = {"0": {"a": 0.6, "b": 0.5, "c": 0.1, "d": 0.4}}  # fold 0 (a, b) +0.05; fold 1 (c, d) −0.05
    decisions = [
        {"seed": 0, "fold": 0, "stage": "cycle 1", "per_query_delta": {"a": 0.1, "b": 0.0}, "correct": True},
        {"seed": 0, "fold": 1, "stage": "cycle 1", "per_query_delta": {"c": -0.1, "d": 0.0}, "correct": False},
    ]
    mode = {"cycles": [{"per_query_ndcg@10": frozen}, {"per_query_ndcg@10": cycle1}], "decisions": decisions}
    proto = [{"seed": 0, "fold": 0, "n_eval_near_dup": near}, {"seed": 0, "fold": 1, "n_eval_near_dup": 0}]
    if ids:  # recorded ids: fold 1's "d" is a near-duplicate, outside the headline stratum
        proto[0] |= {"eval_ids": ["a", "b"], "near_dup_ids": []}
        proto[1] |= {"eval_ids": ["c", "d"], "near_dup_ids": ["d"], "n_eval_near_dup": 1}
    return {"runs": {"none": {"corpora": {"x": {"folds": folds, "protocol_per_seed": proto, "modes": {"hybrid": mode}}}}}}


def test_each_fold_is_scored_on_its_own_evaluation_half():
    out = fs.summarise_folds(_result())["none"]["hybrid"]
    assert out[0]["last"] == [pytest.approx(0.05)] and out[1]["last"] == [pytest.approx(-0.05)]
    assert out[0]["decisions"] == [True] and out[1]["decisions"] == [False]


def test_recorded_ids_give_the_headline_stratum_of_each_fold():
    out = fs.summarise_folds(_result(ids=True))["none"]["hybrid"]
    assert out[0]["last"] == [pytest.approx(0.05)] and out[1]["last"] == [pytest.approx(-0.1)]  # fold 1: only "c"


def test_a_seed_and_fold_without_recorded_queries_is_named():
    r = _result()
    r["runs"]["none"]["corpora"]["x"]["modes"]["hybrid"]["decisions"].pop()  # fold 1 has no decision and no ids
    with pytest.raises(ValueError, match="seed 0 fold 1"):
        fs.summarise_folds(r)


@pytest.mark.parametrize("kw, match", [({"folds": 1}, "not cross-fitted"), ({"near": 2}, "near-duplicates")])
def test_results_it_cannot_split_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        fs.summarise_folds(_result(**kw))
