"""Training from stored relevance feedback (``engine.train_on_feedback``,
:mod:`antigravity.adaptation.feedback_training`): α boundaries, validation order, the
held-out feedback gate, and a learnable synthetic pattern. HashEncoder only, no model.

Synthetic corpus: 6 topics; topic ``t`` has query words ``qw{t}a..c`` and *different*
document words ``dw{t}a..c``. Item ``j`` has a relevant document ``r{j}`` (its topic's
document words + ``item{j}``) and a distractor ``x{j}`` (another topic's document words +
``item{j}``). The query ``qw{t}… item{j}`` ties the two for the raw student (they share only
``item{j}``); feedback teaches "query words of topic t ↔ document words of topic t", which
generalises to held-out items."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from antigravity import AntigravityEngine
from antigravity.adaptation import feedback_training as ft
from antigravity.adaptation.gates import is_held_out
from antigravity.core.errors import AdaptationError, ConfigurationError
from antigravity.serving.feedback import query_key
from antigravity.settings import Settings
from tests.conftest import HashEncoder

T, N = 6, 60
QW = {t: [f"qw{t}{c}" for c in "abc"] for t in range(T)}
DW = {t: [f"dw{t}{c}" for c in "abc"] for t in range(T)}


def corpus() -> list[dict]:
    docs = []
    for j in range(N):
        t = j % T
        t2 = (t + 1 + j % (T - 1)) % T
        docs.append({"_id": f"r{j}", "title": "", "text": " ".join(DW[t]) + f" item{j}"})
        docs.append({"_id": f"x{j}", "title": "", "text": " ".join(DW[t2]) + f" item{j}"})
    return docs


def qtext(j: int) -> str:
    return " ".join(QW[j % T]) + f" item{j}"


def planted_rows(js=range(N)) -> list[dict]:
    rows = []
    for j in js:
        rows.append({"query": qtext(j), "doc_id": f"r{j}", "relevance": 2, "source": "judgment"})
        rows.append({"query": qtext(j), "doc_id": f"x{j}", "relevance": 0, "source": "judgment"})
    return rows


def noise_rows(seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"query": qtext(j), "doc_id": f"{'rx'[rng.integers(2)]}{rng.integers(N)}", "relevance": 2, "source": "judgment"} for j in range(N)]


HELD = [j for j in range(N) if is_held_out(query_key(qtext(j)), 0.2)]


class CountingTeacher(HashEncoder):
    """A 48-d teacher that counts calls and can refuse to be used at all."""

    def __init__(self, explode: bool = False) -> None:
        super().__init__(48, name="counting-teacher")
        self.explode, self.encode_calls = explode, 0

    def encode(self, texts, show_progress=False):
        self.encode_calls += 1
        if self.explode:
            raise AssertionError("the teacher must not be called")
        return super().encode(texts)

    def encode_uncached(self, texts, show_progress=False):
        if self.explode:
            self.encode_calls += 1
            raise AssertionError("the teacher must not be called")
        return super().encode_uncached(texts)


def _engine(tmp_path, *, teacher=None, rows=None, memory=True, **kw) -> AntigravityEngine:
    kw.setdefault("adaptation__rank", 32)
    kw.setdefault("gate__min_queries", 2)  # the planted corpus holds out ~12 feedback queries
    if memory:
        kw.setdefault("store__location", ":memory:")
    if teacher is None:
        kw.setdefault("teacher__name", "none")
    e = AntigravityEngine(data_dir=str(tmp_path), encoder=HashEncoder(128), teacher=teacher, **kw)
    e.ingest(corpus())
    if rows:
        e.feedback_batch(rows)
    return e


def held_out_ndcg(e: AntigravityEngine, js) -> float:
    """NDCG@10 of the planted relevant document (one relevant, grade 2), from the engine's search results."""
    out = []
    for j in js:
        ids = [h.doc_id for h in e.search(qtext(j), k=10, record=False)]
        out.append(sum(1.0 / math.log2(i + 2) for i, d in enumerate(ids) if d == f"r{j}"))
    return float(np.mean(out))


@pytest.fixture
def recorded(monkeypatch):
    """Record the training data handed to the trainer."""
    calls = []
    real = ft.train_feedback_adapters

    def spy(current, data, D, **kw):
        calls.append((current, data, D, kw))
        return real(current, data, D, **kw)

    monkeypatch.setattr(ft, "train_feedback_adapters", spy)
    return calls


# -- settings -------------------------------------------------------------------------------


def test_feedback_settings_defaults_and_bounds():
    f = Settings.load().feedback
    assert (f.alpha, f.holdout_fraction, f.candidates) == (0.5, 0.2, 100)
    for bad in ({"feedback__alpha": 1.5}, {"feedback__alpha": -0.1}, {"feedback__alpha": float("nan")}, {"feedback__holdout_fraction": 0.0},
                {"feedback__holdout_fraction": 1.0}, {"feedback__candidates": 0}):
        with pytest.raises(ConfigurationError):
            Settings.load(**bad)


# -- α boundaries ---------------------------------------------------------------------------


def test_alpha_one_learns_the_planted_pattern_without_the_teacher(tmp_path):
    teacher = CountingTeacher(explode=True)
    e = _engine(tmp_path, teacher=teacher, rows=planted_rows(), memory=False, teacher__name="counting")
    try:
        assert len(HELD) >= 2
        before = held_out_ndcg(e, HELD)
        r = e.train_on_feedback(alpha=1.0)
        assert teacher.encode_calls == 0 and not e.stats()["teacher_loaded"]
        assert r.source == "feedback" and r.ok and r.promoted and r.version == 1, r.reason
        assert r.gate == "feedback_ndcg@10" and r.gate_candidate > r.gate_current
        after = held_out_ndcg(e, HELD)
        assert after > before + 0.1, (before, after)
        assert e.served_version.version == 1
        st = e.stats()
        assert st["feedback_trainings_run"] == 1 and st["feedback_trainings_promoted"] == 1
        meta = r.checkpoint_metrics()
        assert meta["source"] == "feedback" and "teacher" not in meta
        import json

        saved = json.loads(next(e.adapters.dir.glob("*1*.json")).read_text())
        assert saved["source"] == "feedback" and saved["teacher"] is None
    finally:
        e.close()


def test_alpha_zero_equals_training_without_hard_labels(tmp_path, recorded):
    teacher = CountingTeacher()
    e = _engine(tmp_path, teacher=teacher, rows=planted_rows(), teacher__name="counting")
    try:
        r = e.runner.train_on_feedback(alpha=0.0, seed=3)
        assert teacher.encode_calls > 0
        (current, data, D, kw), = recorded
        assert data.hard is not None and data.hard.any()  # the labels were there ...
        q0, d0, _ = ft.train_feedback_adapters(current, dataclasses.replace(data, hard=None), D, **kw)
        q1, d1 = r.candidate
        assert q1 is not None and d1 is None  # default: query adapter only
        for a, b in ((q0, q1), (d0, d1)):
            if a is None:
                assert b is None
                continue
            diff = max(float((x - y).abs().max()) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
            assert diff <= 1e-7, diff  # ... and changed nothing
    finally:
        e.close()


def test_alpha_between_uses_the_teacher_on_the_same_candidates(tmp_path, recorded):
    teacher = CountingTeacher()
    e = _engine(tmp_path, teacher=teacher, rows=planted_rows(), teacher__name="counting")
    try:
        r = e.train_on_feedback(alpha=0.5)
        assert teacher.encode_calls > 0
        (_, data, _, kw), = recorded
        assert kw["alpha"] == 0.5 and data.candidates.shape == data.probs.shape == data.hard.shape
        np.testing.assert_allclose(data.probs.sum(1), 1, atol=1e-5)
        assert not np.allclose(data.probs, data.probs[:, :1])  # teacher rankings, not uniform
        if r.promoted:
            assert r.checkpoint_metrics()["teacher"] == "counting-teacher"
    finally:
        e.close()


@pytest.mark.parametrize("alpha", [1.5, -0.1, float("nan"), float("inf"), True, False, "0.5", None])
def test_invalid_alpha_is_refused_and_nothing_changes(tmp_path, alpha, recorded):
    teacher = CountingTeacher(explode=True)
    e = _engine(tmp_path, teacher=teacher, rows=planted_rows(), teacher__name="counting")
    try:
        calls = e.encoder.calls
        with pytest.raises(ConfigurationError, match=f"alpha = {alpha!r}".replace("(", r"\(").replace(")", r"\)")):
            e.train_on_feedback(alpha=alpha)
        assert e.encoder.calls == calls and not recorded and teacher.encode_calls == 0
        assert e.served_version.version == 0
    finally:
        e.close()


# -- validation order --------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, error, match", [
    ({"seed": -1, "temperature": 0.0}, ConfigurationError, "seed"),
    ({"seed": True, "temperature": 0.0}, ConfigurationError, "seed"),
    ({"seed": 1.5, "alpha": 2.0}, ConfigurationError, "seed"),
    ({"temperature": 0.0, "alpha": 2.0}, ConfigurationError, "temperature"),
    ({"temperature": float("nan"), "alpha": True}, ConfigurationError, "temperature"),
    ({"alpha": 2.0, "holdout_fraction": 0.0}, ConfigurationError, "alpha"),
    ({"alpha": float("nan"), "feedback": []}, ConfigurationError, "alpha"),
    ({"holdout_fraction": 1.0, "candidates": 0}, ConfigurationError, "holdout_fraction"),
    ({"candidates": 0, "alpha": 0.5}, ConfigurationError, "candidates"),  # no teacher either
    ({"alpha": 0.5, "feedback": []}, ConfigurationError, "needs a teacher"),  # too few queries either
    ({"alpha": 1.0, "feedback": []}, AdaptationError, "at least 2 feedback queries"),
])
def test_validation_order_reports_the_earliest_bad_input(tmp_path, kwargs, error, match, recorded):
    e = _engine(tmp_path, rows=planted_rows())  # no teacher configured
    try:
        ctx = e.adaptation_context()
        feedback = kwargs.pop("feedback", e.feedback_store.queries())
        args = {"alpha": 1.0, "temperature": 0.05, "candidates": 10, "holdout_fraction": 0.2, "seed": 0, **kwargs}
        calls = e.encoder.calls
        with pytest.raises(error, match=match):
            ft.run_feedback_training(ctx, feedback, **args)
        assert e.encoder.calls == calls and not recorded
    finally:
        e.close()


def test_unknown_keyword_is_refused(tmp_path):
    e = _engine(tmp_path, rows=planted_rows())
    try:
        with pytest.raises(ConfigurationError, match="alhpa"):
            e.train_on_feedback(alhpa=1.0)
    finally:
        e.close()


def test_fewer_than_two_usable_feedback_queries(tmp_path, recorded):
    e = _engine(tmp_path, rows=planted_rows([0, 1]))
    try:
        e.delete(["r1", "x1"])  # query 1's judged documents are gone: one usable query left
        with pytest.raises(AdaptationError, match="at least 2 feedback queries .* got 1; nothing changed"):
            e.train_on_feedback(alpha=1.0)
        assert e.served_version.version == 0 and not recorded
    finally:
        e.close()


def test_without_feedback_the_label_free_cycle_is_unchanged(tmp_path):
    e = _engine(tmp_path)
    try:
        with pytest.raises(AdaptationError, match="got 0"):
            e.train_on_feedback(alpha=1.0)
        assert e.served_version.version == 0 and e.stats()["feedback_trainings_run"] == 1
    finally:
        e.close()


# -- the gate --------------------------------------------------------------------------------


def test_held_out_queries_are_never_trained_on(tmp_path, recorded):
    e = _engine(tmp_path, rows=planted_rows())
    try:
        r = e.train_on_feedback(alpha=1.0)
        m = r.metrics
        held = {query_key(qtext(j)) for j in HELD}
        assert set(m["held_out_keys"]) == held and not set(m["train_keys"]) & held
        assert m["n_train"] + m["n_held_out"] == N == m["n_feedback_queries"]
        (_, data, _, _), = recorded
        assert len(data.queries) == m["n_train"]
        held_vecs = e.encoder.encode([qtext(j) for j in HELD])
        assert np.max(data.queries @ held_vecs.T) < 0.999  # no held-out query vector among the training rows
        train_vecs = e.encoder.encode([next(q.query for q in e.feedback_store.queries() if q.key == k) for k in m["train_keys"]])
        np.testing.assert_allclose(data.queries, train_vecs, atol=1e-6)
    finally:
        e.close()


def test_noise_feedback_is_rejected_by_the_gate(tmp_path):
    e = _engine(tmp_path, rows=noise_rows())
    try:
        before = held_out_ndcg(e, HELD)
        r = e.train_on_feedback(alpha=1.0)
        assert not r.ok and not r.promoted and r.reason.startswith("rejected: feedback_ndcg@10"), r.reason
        assert r.candidate is not None  # trained, judged, refused
        assert e.served_version.version == 0 and held_out_ndcg(e, HELD) == before
        assert e.stats()["feedback_trainings_rejected"] == 1
    finally:
        e.close()


def test_too_few_held_out_queries_is_rejected_not_promoted_ungated(tmp_path, recorded):
    e = _engine(tmp_path, rows=planted_rows(), gate__enabled=False)
    try:
        r = e.train_on_feedback(alpha=1.0, holdout_fraction=0.001)
        assert not r.ok and not r.promoted and "cannot gate" in r.reason and r.reason.startswith("rejected:")
        assert r.metrics["n_gate_queries"] < 2 and not recorded and e.served_version.version == 0
    finally:
        e.close()


def test_feedback_distribution_is_listnet_with_ndcg_gains():
    p = ft.feedback_distribution(np.array([[0, 1, 2, 3], [0, 0, 0, 0]], np.float32))
    np.testing.assert_allclose(p[0], np.array([0, 1, 3, 7]) / 11, rtol=1e-6)
    assert not p[1].any()


def test_a_teacher_failure_keeps_the_served_version(tmp_path, recorded):
    class Down(CountingTeacher):
        def encode(self, texts, show_progress=False):
            raise RuntimeError("endpoint down")

    e = _engine(tmp_path, teacher=Down(), rows=planted_rows(), teacher__name="down")
    try:
        r = e.train_on_feedback(alpha=0.5)
        assert not r.promoted and r.source == "feedback" and "teacher failed" in r.reason
        assert e.stats()["teacher_failures"] == {"runtime": 1} and e.served_version.version == 0 and not recorded
    finally:
        e.close()


# -- generalisation options (query side only, other queries' positives as negatives) ---------


def test_other_positive_candidates_are_seeded_draws_from_judged_relevant_documents():
    judgments = [{0: 2, 1: 0}, {5: 1}, {7: 3, 9: 0}]
    a = ft.other_positive_candidates(judgments, 1, seed=4)
    assert a.shape == (3, 1) and a.dtype == np.int64
    assert set(a.ravel()) <= {0, 5, 7}  # grade ≥ 1 only: rows 1 and 9 are never drawn
    assert all(not set(r) & set(j) for r, j in zip(a, judgments))  # never one of the query's own judged documents
    assert np.array_equal(a, ft.other_positive_candidates(judgments, 1, seed=4))
    assert ft.other_positive_candidates(judgments, 10, seed=0).shape == (3, 1)  # 3 positives − at most 2 judged per query
    b = ft.other_positive_candidates([{0: 1}, {1: 1}, {2: 1}, {3: 1}], 2, seed=0)
    assert b.shape == (4, 2) and all(len(set(r)) == 2 and i not in r for i, r in enumerate(b))  # without replacement
    assert ft.other_positive_candidates(judgments, 0, seed=0).shape == (3, 0)
    assert ft.other_positive_candidates([{1: 0}], 5, seed=0).shape == (1, 0)


def test_build_targets_appends_other_positives_with_their_own_grades():
    rng = np.random.default_rng(0)
    D = rng.standard_normal((30, 8)).astype(np.float32)
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    Sq = D[[0, 10]] + 0.01
    judgments = [{3: 2}, {20: 1, 3: 0}]
    base = ft.build_feedback_targets(Sq, D, judgments, k=4, alpha=1.0, temperature=0.05, teacher_scores=None)
    more = ft.build_feedback_targets(Sq, D, judgments, k=4, alpha=1.0, temperature=0.05, teacher_scores=None, other_positives=2, seed=1)
    w = base.candidates.shape[1]
    assert more.candidates.shape == (2, w)  # 2 positives − 2 judged by query 1: nothing to draw
    judgments = [{3: 2}, {20: 1}]
    base = ft.build_feedback_targets(Sq, D, judgments, k=4, alpha=1.0, temperature=0.05, teacher_scores=None)
    more = ft.build_feedback_targets(Sq, D, judgments, k=4, alpha=1.0, temperature=0.05, teacher_scores=None, other_positives=2, seed=1)
    w = base.candidates.shape[1]
    assert more.candidates.shape == (2, w + 1)
    assert np.array_equal(more.candidates[:, :w], base.candidates)
    assert more.candidates[0, w] == 20 and more.candidates[1, w] == 3  # the other query's positive, as a negative
    assert more.hard[0, w] == 0 and more.hard[1, w] == 0 and np.allclose(more.hard.sum(1), 1)


def test_query_only_training_leaves_the_served_document_adapter_untouched(tmp_path, recorded):
    e = _engine(tmp_path, rows=planted_rows())
    try:
        r = e.train_on_feedback(alpha=1.0, config=ft.FeedbackConfig(train_documents=False))
        q, d = r.candidate
        assert q is not None and d is None  # nothing served on the document side: identity stays identity
        (current, data, D, kw), = recorded
        assert kw["config"].train_documents is False
        r2 = e.runner.train_on_feedback(alpha=1.0, config=ft.FeedbackConfig(train_documents=True))
        assert r2.candidate[1] is not None and r2.candidate[1] is not r2.candidate[0]
    finally:
        e.close()


def test_gate_reports_the_held_out_queries_whose_documents_training_never_judged(tmp_path):
    e = _engine(tmp_path, rows=planted_rows())
    try:
        r = e.train_on_feedback(alpha=1.0)
        gm = r.metrics["gate_metrics"]
        # every item has its own relevant document, so no held-out query's document was judged in training
        assert gm["n_never_seen"] == r.metrics["n_gate_queries"] >= 2
        assert gm["delta_never_seen"] == pytest.approx(gm["delta"])
        assert "no training feedback judged" in r.reason
    finally:
        e.close()


def test_too_few_held_out_feedback_queries_for_gate_min_queries_is_refused_untrained(tmp_path, recorded):
    e = _engine(tmp_path, rows=planted_rows(), gate__min_queries=50)  # ~12 feedback queries are held out
    try:
        r = e.train_on_feedback(alpha=1.0)
        assert not r.ok and not r.promoted and r.candidate is None and not recorded
        assert "< gate.min_queries = 50" in r.reason and "cannot gate" in r.reason
        assert e.served_version.version == 0
    finally:
        e.close()
