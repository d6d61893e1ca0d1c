"""The opt-in feedback prior at serving time (:mod:`antigravity.serving.feedback_prior`):
off by default, a bounded boost only for documents judged relevant on a *similar* feedback
query, only among the student's top candidates, rebuilt when feedback is written."""

from __future__ import annotations

import pytest

from antigravity import AntigravityEngine
from antigravity.core.errors import ConfigurationError
from antigravity.settings import Settings
from tests.conftest import HashEncoder

DOCS = [{"_id": f"d{i}", "text": f"alpha beta gamma topic{i % 3} word{i}"} for i in range(40)]
QUERY = "alpha beta gamma topic1"


def _engine(tmp_path, **kw) -> AntigravityEngine:
    e = AntigravityEngine(data_dir=str(tmp_path), store__location=":memory:", encoder=HashEncoder(64), teacher__name="none", **kw)
    e.ingest(DOCS)
    return e


def ids(hits) -> list[str]:
    return [h.doc_id for h in hits]


def test_off_by_default_feedback_changes_nothing(tmp_path):
    e = _engine(tmp_path)
    try:
        before = [(h.doc_id, h.score) for h in e.search(QUERY, k=10, record=False)]
        e.feedback(QUERY, before[-1][0], 3, source="judgment")
        assert [(h.doc_id, h.score) for h in e.search(QUERY, k=10, record=False)] == before
        assert e.stats().get("prior_boosted_queries", 0) == 0
    finally:
        e.close()


def test_boost_lifts_a_judged_document_for_a_similar_query_and_scores_say_so(tmp_path):
    e = _engine(tmp_path, feedback__prior_boost=0.5, feedback__prior_similarity=0.9)
    try:
        plain = e.search(QUERY, k=30, record=False)
        target = plain[20]  # inside the re-ranked candidates (prior_candidates = 100)
        e.feedback(QUERY, target.doc_id, 2, source="click")
        hits = e.search(QUERY, k=10, record=False)
        assert hits[0].doc_id == target.doc_id
        assert hits[0].score == pytest.approx(target.score + 0.5, abs=1e-5)
        assert [h.doc_id for h in hits[1:]] == [h.doc_id for h in plain[:9]]  # the rest keeps the student's order and scores
        assert e.stats()["prior_boosted_queries"] == 1
    finally:
        e.close()


def test_no_boost_for_a_dissimilar_query_or_a_grade_zero_judgment(tmp_path):
    e = _engine(tmp_path, feedback__prior_boost=0.5, feedback__prior_similarity=0.9)
    try:
        plain = ids(e.search(QUERY, k=10, record=False))
        e.feedback("completely different words here", "d39", 3, source="judgment")  # cosine far below 0.9
        e.feedback(QUERY, "d38", 0, source="click")  # shown and skipped: not a positive
        assert ids(e.search(QUERY, k=10, record=False)) == plain
        assert e.stats().get("prior_boosted_queries", 0) == 0
    finally:
        e.close()


def test_a_boosted_document_outside_the_candidates_is_not_pulled_in(tmp_path):
    e = _engine(tmp_path, feedback__prior_boost=1.0, feedback__prior_similarity=0.9, feedback__prior_candidates=5)
    try:
        plain = e.search(QUERY, k=40, record=False)
        far = plain[-1].doc_id
        e.feedback(QUERY, far, 3, source="judgment")
        assert far not in ids(e.search(QUERY, k=10, record=False))
    finally:
        e.close()


def test_deleted_judged_document_never_appears_and_new_feedback_is_seen_at_once(tmp_path):
    e = _engine(tmp_path, feedback__prior_boost=0.5, feedback__prior_similarity=0.9)
    try:
        plain = ids(e.search(QUERY, k=30, record=False))
        a, b = plain[15], plain[25]
        e.feedback(QUERY, a, 2, source="click")
        assert ids(e.search(QUERY, k=10, record=False))[0] == a
        e.delete([a])
        assert a not in ids(e.search(QUERY, k=30, record=False))
        e.feedback(QUERY, b, 2, source="click")  # the prior's index is rebuilt after this write
        assert ids(e.search(QUERY, k=10, record=False))[0] == b
    finally:
        e.close()


def test_prior_applies_to_vector_searches(tmp_path):
    e = _engine(tmp_path, feedback__prior_boost=0.5, feedback__prior_similarity=0.9)
    try:
        plain = ids(e.search(QUERY, k=30, record=False))
        e.feedback(QUERY, plain[12], 2, source="click")
        qv = e.encode_queries([QUERY])
        assert ids(e.search_vectors(qv, k=5, record=False)[0])[0] == plain[12]
    finally:
        e.close()


@pytest.mark.parametrize("bad", [{"feedback__prior_boost": -0.1}, {"feedback__prior_boost": 1.5}, {"feedback__prior_similarity": 1.2},
                                 {"feedback__prior_candidates": 0}])
def test_prior_settings_are_validated(bad):
    with pytest.raises(ConfigurationError):
        Settings.load(**bad)


def test_a_feedback_write_encodes_only_the_new_query_texts(tmp_path):
    e = _engine(tmp_path, feedback__prior_boost=0.5, feedback__prior_similarity=0.9)
    try:
        plain = ids(e.search(QUERY, k=30, record=False))
        e.feedback(QUERY, plain[12], 2, source="click")
        e.feedback("alpha beta topic2", plain[3], 1, source="click")
        e.search(QUERY, k=5, record=False)
        encoded = []
        real = e.encoder.encode
        e.encoder.encode = lambda texts, **kw: (encoded.append(list(texts)), real(texts, **kw))[1]
        e.feedback(QUERY, plain[20], 1, source="click")  # a known query text: nothing to encode
        e.search_vectors(e.encode_queries([QUERY]), k=5, record=False)
        e.feedback("gamma topic0 word7", plain[5], 1, source="click")  # one new text
        e.search_vectors(e.encode_queries([QUERY]), k=5, record=False)
        assert encoded == [["gamma topic0 word7"]]
    finally:
        e.close()
