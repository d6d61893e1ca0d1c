import math

import pytest

from antigravity.evaluation import evaluate, evaluate_per_query, paired_test


def test_hand_checked_values():
    qrels = {"q1": {"d1": 1, "d2": 1}, "q2": {"d9": 1}}
    run = {"q1": {"d3": 0.9, "d1": 0.8, "d4": 0.7}, "q2": {"d9": 0.5, "d8": 0.4}}
    per = evaluate_per_query(qrels, run)
    # q1: one of two relevant docs at rank 2 -> DCG = 1/log2(3); IDCG = 1 + 1/log2(3)
    assert per["q1"]["ndcg@10"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)), abs=1e-6)
    assert per["q1"]["mrr@10"] == pytest.approx(0.5)
    assert per["q1"]["recall@100"] == pytest.approx(0.5)
    assert per["q2"]["ndcg@10"] == pytest.approx(1.0)
    agg = evaluate(qrels, run)
    assert agg["mrr@10"] == pytest.approx(0.75)


def test_query_missing_from_run_counts_zero():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    agg = evaluate(qrels, {"q1": {"d1": 1.0}})
    assert agg["ndcg@10"] == pytest.approx(0.5)


def test_mrr_cut_at_10():
    run = {"q1": {f"x{i}": 1.0 - i / 100 for i in range(10)} | {"d1": 0.0}}  # relevant at rank 11
    per = evaluate_per_query({"q1": {"d1": 1}}, run)
    assert per["q1"]["mrr@10"] == 0.0
    assert per["q1"]["recall@100"] == 1.0


def test_graded_relevance_uses_gains():
    qrels = {"q": {"a": 2, "b": 1}}
    per = evaluate_per_query(qrels, {"q": {"b": 0.9, "a": 0.8}})
    dcg = 1 / 1 + 2 / math.log2(3)
    idcg = 2 / 1 + 1 / math.log2(3)
    assert per["q"]["ndcg@10"] == pytest.approx(dcg / idcg, abs=1e-6)


def test_paired_test():
    a = {str(i): 0.5 for i in range(50)}
    b = {str(i): 0.5 + (0.1 if i % 2 else 0.05) for i in range(50)}
    res = paired_test(a, b)
    assert res["delta"] == pytest.approx(0.075)
    assert res["p"] < 1e-6
    assert paired_test(a, a)["p"] == 1.0
