"""Position-biased clicks: the simulator (:mod:`antigravity.clicks`) and inverse-propensity
weighting in feedback training (``feedback.propensity = "position"``,
:mod:`antigravity.adaptation.feedback_training`). HashEncoder only, no model; the engine
fixtures and the planted corpus come from ``tests/test_feedback_training.py``."""

from __future__ import annotations

import numpy as np
import pytest

from antigravity.adaptation import feedback_training as ft
from antigravity.clicks import position_propensity, simulate_clicks
from antigravity.core.errors import ConfigurationError
from antigravity.serving.feedback import query_key
from antigravity.settings import Settings
from tests import test_feedback_training as tft
from tests.test_feedback_training import N, _engine, qtext

recorded = tft.recorded  # the fixture that records the training data handed to the trainer

DOCS = [f"d{i}" for i in range(1, 11)]


def _rates(rows, sessions: int, k: int = 10) -> np.ndarray:
    counts = np.zeros(k)
    for r in rows:
        counts[r["rank"] - 1] += 1
    return counts / sessions


# -- the simulator ---------------------------------------------------------------------------


def test_position_propensity_is_inverse_rank_to_the_eta():
    np.testing.assert_allclose(position_propensity([1, 2, 3, 10]), [1, 0.5, 1 / 3, 0.1])
    np.testing.assert_allclose(position_propensity([2, 4], eta=2.0), [0.25, 1 / 16])
    np.testing.assert_allclose(position_propensity([1, 7], eta=0.0), [1, 1])
    with pytest.raises(ConfigurationError, match="ranks must be >= 1"):
        position_propensity([0, 1])
    with pytest.raises(ConfigurationError, match="eta = -1"):
        position_propensity([1], eta=-1)


def test_click_rate_by_rank_follows_the_propensity():
    """All shown documents relevant, ε+ = 1: the click rate at rank r is p_r = 1/r (η = 1)."""
    n = 20000
    rows = simulate_clicks({"q": DOCS}, {"q": set(DOCS)}, {"q": "text"}, sessions=n, eta=1.0, eps_pos=1.0, seed=0)
    rate = _rates(rows, n)
    assert rate[0] == 1.0  # p_1 = 1, ε+ = 1: always clicked
    se = np.sqrt(0.1 * 0.9 / n)
    assert abs(rate[9] - 0.1) < 4 * se, rate[9]
    assert 8.5 < rate[0] / rate[9] < 11.8  # ≈ p_1 / p_10 = 10
    np.testing.assert_allclose(rate, 1 / np.arange(1, 11), atol=0.015)
    flat = _rates(simulate_clicks({"q": DOCS}, {"q": set(DOCS)}, {"q": "text"}, sessions=n, eta=0.0, seed=1), n)
    assert abs(flat[9] - 1.0) < 1e-12  # η = 0: no position bias
    steep = _rates(simulate_clicks({"q": DOCS}, {"q": set(DOCS)}, {"q": "text"}, sessions=n, eta=2.0, seed=2), n)
    assert abs(steep[1] - 0.25) < 0.015 and steep[9] < 0.02


def test_noise_clicks_on_non_relevant_documents_at_eps_minus():
    n = 20000
    rel = {"q": {"d1": 1, "d2": 0}}  # a qrels dict: only grade >= 1 is relevant
    rows = simulate_clicks({"q": DOCS}, rel, {"q": "text"}, sessions=n, eta=1.0, eps_pos=1.0, eps_neg=0.1, seed=3)
    rate = _rates(rows, n)
    assert rate[0] == 1.0
    assert abs(rate[1] - 0.5 * 0.1) < 4 * np.sqrt(0.05 * 0.95 / n), rate[1]  # p_2 · ε−
    assert abs(rate[4] - 0.2 * 0.1) < 4 * np.sqrt(0.02 * 0.98 / n), rate[4]
    silent = simulate_clicks({"q": DOCS}, rel, {"q": "text"}, sessions=2000, eps_neg=0.0, seed=3)
    assert {r["doc_id"] for r in silent} == {"d1"}  # ε− = 0: no click on a non-relevant document


def test_rows_are_store_rows_and_a_seed_fixes_them():
    shown = {"a": ["x", "y", "z"], "b": ["z", "x"]}
    rel, texts = {"a": {"y"}, "b": {"z"}}, {"a": "query a", "b": "query b"}
    rows = simulate_clicks(shown, rel, texts, sessions=50, seed=7)
    assert rows == simulate_clicks(shown, rel, texts, sessions=50, seed=7)
    assert rows == simulate_clicks(shown, rel, texts, sessions=50, seed=np.random.default_rng(7))
    assert rows != simulate_clicks(shown, rel, texts, sessions=50, seed=8)
    for r in rows:
        assert set(r) == {"query", "doc_id", "relevance", "source", "rank"} and r["relevance"] == 1 and r["source"] == "click"
        qid = "a" if r["query"] == "query a" else "b"
        assert shown[qid][r["rank"] - 1] == r["doc_id"]
    assert [r["query"] for r in rows] == sorted(r["query"] for r in rows)  # sorted-qid order


@pytest.mark.parametrize("kwargs, match", [
    ({"eta": -0.5}, "eta = -0.5"), ({"eta": float("nan")}, "eta = nan"), ({"eps_pos": 1.5}, "eps_pos = 1.5"),
    ({"eps_neg": -0.1}, "eps_neg = -0.1"), ({"sessions": 0}, "sessions = 0"), ({"sessions": True}, "sessions = True"),
])
def test_simulator_refuses_bad_parameters(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        simulate_clicks({"q": DOCS}, {}, {"q": "t"}, **kwargs)


def test_simulator_refuses_a_repeated_document_or_a_missing_text():
    with pytest.raises(ConfigurationError, match="repeats a document"):
        simulate_clicks({"q": ["a", "a"]}, {}, {"q": "t"})
    with pytest.raises(ConfigurationError, match="'q' is shown but has no text"):
        simulate_clicks({"q": ["a"]}, {}, {})


# -- the store keeps what the weighting needs -------------------------------------------------


def test_store_reports_click_ranks_and_a_later_judgment_replaces_the_click(tmp_path):
    e = _engine(tmp_path, rows=[{"query": qtext(0), "doc_id": "r0", "source": "click", "rank": 4},
                                {"query": qtext(0), "doc_id": "x0", "source": "click"},
                                {"query": qtext(1), "doc_id": "r1", "source": "click", "rank": 2}])
    try:
        e.feedback_batch([{"query": qtext(1), "doc_id": "r1", "relevance": 3, "source": "judgment"}])
        q = {x.query: x for x in e.feedback_store.queries()}
        assert q[qtext(0)].clicks == {"r0": 4, "x0": None}
        assert q[qtext(1)].clicks == {} and q[qtext(1)].judgments == {"r1": 3}
        assert {x.query: x.clicks for x in e.feedback_store.queries(["click"])}[qtext(1)] == {"r1": 2}
    finally:
        e.close()


# -- inverse-propensity weights ---------------------------------------------------------------


def test_click_weights_are_inverse_propensities_clipped():
    w, n = ft.click_weights({"a": 5, "b": 1, "c": 40, "d": None, "e": 3}, eta=1.0, clip=10.0)
    assert w == {"a": 5.0, "b": 1.0, "c": 10.0, "d": 1.0, "e": pytest.approx(3.0)}
    assert n == {"n_click_rows": 5, "n_click_rows_unknown_rank": 1, "n_click_rows_clipped": 1}
    w2, _ = ft.click_weights({"e": 3, "c": 40}, eta=2.0, clip=float("inf"))
    assert w2["e"] == pytest.approx(9.0) and w2["c"] == pytest.approx(1600.0)


def test_feedback_distribution_weights_the_gains():
    g = np.array([[1, 1, 0, 2]], np.float32)
    np.testing.assert_allclose(ft.feedback_distribution(g, np.array([[5.0, 1.0, 9.0, 1.0]])), [[5 / 9, 1 / 9, 0, 3 / 9]], rtol=1e-6)
    assert np.array_equal(ft.feedback_distribution(g, np.ones_like(g)), ft.feedback_distribution(g))


@pytest.mark.parametrize("kwargs, match", [
    ({"propensity": "pos"}, "propensity = 'pos'"), ({"propensity": None}, "propensity = None"),
    ({"propensity_eta": 0.0}, "propensity_eta = 0.0"), ({"propensity_eta": float("inf")}, "propensity_eta = inf"),
    ({"propensity_eta": True}, "propensity_eta = True"), ({"propensity_clip": 0.5}, "propensity_clip = 0.5"),
    ({"propensity_clip": float("nan")}, "propensity_clip = nan"),
])
def test_invalid_propensity_is_refused_before_training(tmp_path, kwargs, match, recorded):
    e = _engine(tmp_path, rows=[{"query": qtext(j), "doc_id": f"r{j}", "source": "click", "rank": 2} for j in range(N)])
    try:
        calls = e.encoder.calls
        with pytest.raises(ConfigurationError, match=match):
            e.train_on_feedback(alpha=1.0, **kwargs)
        assert not recorded and e.encoder.calls == calls and e.served_version.version == 0
    finally:
        e.close()


def test_propensity_settings_defaults_and_bounds():
    f = Settings.load().feedback
    assert (f.propensity, f.propensity_eta, f.propensity_clip) == ("none", 1.0, 10.0)
    for bad in ({"feedback__propensity": "positional"}, {"feedback__propensity_eta": 0.0}, {"feedback__propensity_eta": float("nan")},
                {"feedback__propensity_clip": 0.9}):
        with pytest.raises(ConfigurationError, match=next(iter(bad)).replace("__", ".")):
            Settings.load(**bad)


def _mixed_rows() -> list[dict]:
    """Per planted query j: the relevant document clicked at rank 5 and the distractor at rank 1
    (both relevance 1), except j % 4 == 1 (judgments at those ranks: not position-biased) and
    j % 4 == 2 (the relevant click has no recorded rank)."""
    rows = []
    for j in range(N):
        src = "judgment" if j % 4 == 1 else "click"
        rows.append({"query": qtext(j), "doc_id": f"r{j}", "relevance": 1, "source": src, "rank": None if j % 4 == 2 else 5})
        rows.append({"query": qtext(j), "doc_id": f"x{j}", "relevance": 1, "source": src, "rank": 1})
    return rows


def _mass(e, data, report) -> dict[int, tuple[float, float]]:
    """``{j: (mass on r_j, mass on x_j)}`` of the recorded hard targets (training rows are in
    the order of ``report.metrics["train_keys"]``)."""
    doc_ids = e.adaptation_context().doc_ids
    j_of = {query_key(qtext(j)): j for j in range(N)}
    out = {}
    for key, cand, h in zip(report.metrics["train_keys"], data.candidates, data.hard):
        ids, j = [doc_ids[c] for c in cand], j_of[key]
        out[j] = (float(h[ids.index(f"r{j}")]), float(h[ids.index(f"x{j}")]))
    return out


def test_position_weighting_moves_mass_to_the_low_ranked_click(tmp_path, recorded):
    e = _engine(tmp_path, rows=_mixed_rows(), feedback__propensity="position")  # from the settings, no override
    try:
        r = e.train_on_feedback(alpha=1.0)
        (_, data, _, _), = recorded
        mass = _mass(e, data, r)
        assert {j % 4 for j in mass} == {0, 1, 2, 3}
        for j, (rel, dis) in mass.items():
            if j % 4 in (1, 2):  # judgments, and a click without a rank: not reweighted
                assert rel == pytest.approx(0.5) and dis == pytest.approx(0.5), (j, rel, dis)
            else:  # weights 5 (rank 5) and 1 (rank 1)
                assert rel == pytest.approx(5 / 6, rel=1e-5) and dis == pytest.approx(1 / 6, rel=1e-5), (j, rel, dis)
        m = r.metrics
        train = set(m["train_keys"])
        n_click_q = sum(1 for j in range(N) if j % 4 != 1 and query_key(qtext(j)) in train)
        assert m["propensity"] == "position" and m["n_click_rows"] == 2 * n_click_q
        assert m["n_click_rows_unknown_rank"] == sum(1 for j in range(N) if j % 4 == 2 and query_key(qtext(j)) in train)
        assert m["n_click_rows_clipped"] == 0 and m["max_click_weight"] == 5.0
    finally:
        e.close()


def test_clip_bounds_the_weight(tmp_path, recorded):
    e = _engine(tmp_path, rows=_mixed_rows())
    try:
        r = e.train_on_feedback(alpha=1.0, propensity="position", propensity_clip=2.0)
        (_, data, _, _), = recorded
        for j, (rel, dis) in _mass(e, data, r).items():
            if j % 4 in (0, 3):
                assert rel == pytest.approx(2 / 3, rel=1e-5) and dis == pytest.approx(1 / 3, rel=1e-5)
        assert r.metrics["max_click_weight"] == 2.0 and r.metrics["n_click_rows_clipped"] > 0
    finally:
        e.close()


def test_default_leaves_clicks_unweighted_and_training_unchanged(tmp_path, recorded):
    """``propensity = "none"`` (the default): every clicked document gets the same mass, and the
    trained adapters equal those of the same feedback with its ranks erased."""
    rows = _mixed_rows()
    e = _engine(tmp_path, rows=rows)
    e2 = _engine(tmp_path / "b", rows=[{**r, "rank": None} for r in rows])
    try:
        r1, r2 = e.train_on_feedback(alpha=1.0), e2.train_on_feedback(alpha=1.0, propensity="position")
        (_, d1, _, _), (_, d2, _, _) = recorded
        assert all(m == (pytest.approx(0.5), pytest.approx(0.5)) for m in _mass(e, d1, r1).values())
        assert np.array_equal(d1.hard, d2.hard) and np.array_equal(d1.candidates, d2.candidates)
        assert r1.metrics["propensity"] == "none" and "n_click_rows" not in r1.metrics
        for a, b in zip(r1.candidate, r2.candidate):
            if a is None:  # the document side is not trained by default
                assert b is None
                continue
            assert all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    finally:
        e.close()
        e2.close()
