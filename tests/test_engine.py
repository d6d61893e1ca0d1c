import numpy as np
import pytest

from antigravity import AntigravityEngine
from antigravity.core.errors import AntigravityError, DocumentError, EmptyCorpusError, QueryError
from antigravity.adaptation.adapter import ResidualAdapter
from tests.conftest import TOY_DOCS


def test_ingest_and_search(engine):
    assert engine.ingest(TOY_DOCS) == 5
    assert engine.count() == 5
    hits = engine.search("aspirin pain", k=2)
    assert len(hits) == 2 and hits[0].doc_id == "d1"
    assert hits[0].payload["title"] == "Aspirin" and hits[0].score >= hits[1].score
    batch = engine.search_batch(["cats sleep", "loyal dogs"], k=1)
    assert [b[0].doc_id for b in batch] == ["d2", "d5"]


def test_tuple_documents_and_payload(engine):
    engine.ingest([("x1", "a text about cats"), ("x2", "about dogs", {"lang": "en"})])
    hit = engine.search("dogs", k=1)[0]
    assert hit.doc_id == "x2" and hit.payload["lang"] == "en"


def test_duplicate_within_call_rejected_nothing_lost(engine):
    engine.ingest(TOY_DOCS)
    with pytest.raises(DocumentError, match="duplicate document id 'n1'"):
        engine.ingest([("n1", "new one"), ("n1", "again")])
    assert engine.count() == 5  # nothing written from the rejected batch, nothing lost


def test_duplicate_across_calls_upserts(engine):
    engine.ingest(TOY_DOCS)
    engine.ingest([{"_id": "d1", "title": "Aspirin v2", "text": "updated"}])
    assert engine.count() == 5
    assert engine.search("updated", k=1)[0].payload["title"] == "Aspirin v2"


def test_duplicate_across_batches_of_one_call(engine):
    docs = [("a", "x y"), ("b", "y z"), ("a", "z w")]
    with pytest.raises(DocumentError, match="duplicate"):
        engine.ingest(docs, batch_size=2)
    assert engine.count() == 0  # validated before the first batch is written: nothing of the call stored


@pytest.mark.parametrize(
    "doc,match",
    [
        ({"title": "t", "text": "x"}, "needs '_id' and 'text'"),
        ({"_id": "a", "title": "t"}, "needs '_id' and 'text'"),
        ({"_id": "a", "text": 42}, "'text' must be a string"),
        ({"_id": "a", "text": "x", "title": 3}, "'title' must be a string"),
        ({"_id": None, "text": "x"}, "invalid id"),
        ({"_id": "", "text": "x"}, "invalid id"),
        (42, "must be a dict"),
    ],
)
def test_bad_documents(engine, doc, match):
    engine.ingest(TOY_DOCS)
    with pytest.raises(DocumentError, match=match):
        engine.ingest([doc])
    assert engine.count() == 5


def test_empty_corpus(engine):
    with pytest.raises(EmptyCorpusError):
        engine.ingest([])
    with pytest.raises(AntigravityError):
        engine.ingest(iter(()))


@pytest.mark.parametrize("query", ["", "   "])
def test_empty_query(engine, query):
    engine.ingest(TOY_DOCS)
    with pytest.raises(QueryError, match="empty"):
        engine.search(query)


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_bad_k(engine, k):
    engine.ingest(TOY_DOCS)
    with pytest.raises(QueryError, match="k must be"):
        engine.search("fever", k=k)


def test_non_string_query(engine):
    with pytest.raises(QueryError, match="must be a string"):
        engine.search(5)  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="list of queries"):
        engine.search_batch("fever")


def test_nan_query_vector(engine):
    engine.ingest(TOY_DOCS)
    v = np.full((1, engine.encoder.dim), np.nan, np.float32)
    with pytest.raises(QueryError, match="NaN"):
        engine.search_vectors(v)


def test_search_before_ingest_is_empty(engine):
    assert engine.search("anything") == []


def test_search_records_traffic_unless_disabled(engine):
    engine.ingest(TOY_DOCS)
    engine.search("fever", record=False)
    assert engine.stats()["traffic_buffered"] == 0
    engine.search("fever")
    assert engine.stats()["traffic_buffered"] == 1


def test_activate_switches_served_version(engine):
    engine.ingest(TOY_DOCS)
    before = [h.doc_id for h in engine.search("aspirin fever", k=5)]
    ad = ResidualAdapter(engine.encoder.dim, 4)
    engine.activate(ad, ad, version=1)  # identity-initialised: same ranking, now from a served slot
    assert engine.served_version.slot.startswith("served_")
    assert [h.doc_id for h in engine.search("aspirin fever", k=5)] == before
    # documents ingested after the switch are served too
    engine.ingest([("new", "aspirin fever remedy")])
    assert "new" in [h.doc_id for h in engine.search("aspirin fever remedy", k=2)]


def test_persistent_engine_reopens(tmp_path, hash_encoder):
    with AntigravityEngine(data_dir=str(tmp_path), encoder=hash_encoder) as eng:
        eng.ingest(TOY_DOCS)
    with AntigravityEngine(data_dir=str(tmp_path), encoder=hash_encoder) as eng:
        assert eng.count() == 5
        assert eng.search("cats", k=1)[0].doc_id == "d2"


def test_keyword_overrides_validated(tmp_path):
    from antigravity.core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="student.batch_size"):
        AntigravityEngine(data_dir=str(tmp_path), student__batch_size=0)
