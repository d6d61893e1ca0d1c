"""Relevance feedback intake (antigravity.serving.feedback): validation before anything is
written, deduplication, the row bound, durability through a restart, stats, and the
``antigravity feedback import`` command (JSONL and BEIR qrels). The kill -9 test is in
tests/test_crash.py (``test_kill_during_feedback``)."""

from __future__ import annotations

import json
import math
import stat
import sys

import pytest

from antigravity import AntigravityEngine
from antigravity.core.errors import FeedbackError
from antigravity.serving.feedback import FIELDS
from tests.conftest import TOY_DOCS, HashEncoder

GOOD = {"query": "aspirin fever", "doc_id": "d1", "relevance": 2, "source": "click", "rank": 1}


def _engine(tmp_path, memory: bool = False, **kw) -> AntigravityEngine:
    loc = {"store__location": ":memory:"} if memory else {}
    return AntigravityEngine(data_dir=str(tmp_path), encoder=HashEncoder(32), adaptation__rank=8, **loc, **kw)


@pytest.fixture
def eng(tmp_path):
    e = _engine(tmp_path)
    e.ingest(TOY_DOCS)
    e.feedback("cats", "d2")  # one row stored before each bad call: it must stay the only one
    yield e
    e.close()


@pytest.mark.parametrize(
    "change,match",
    [
        ({"query": ""}, "query '' is empty"),
        ({"query": "   "}, "query '   ' is empty"),
        ({"query": 5}, "query 5 must be a string, got int"),
        ({"query": None}, "query None must be a string, got NoneType"),
        ({"query": "bad \ud800"}, "query .bad .ud800. is not valid Unicode"),
        ({"doc_id": None}, "invalid doc_id None"),
        ({"doc_id": ""}, "invalid doc_id '' \\(empty\\)"),
        ({"doc_id": 1.5}, "invalid doc_id 1.5 of type float"),
        ({"doc_id": True}, "invalid doc_id True of type bool"),
        ({"doc_id": "d\ud800"}, "invalid doc_id .* is not valid Unicode"),
        ({"doc_id": "nope"}, "document 'nope' is not stored in collection 'antigravity'"),
        ({"doc_id": 7}, "document '7' is not stored"),
        ({"relevance": True}, "relevance True must be an int in 0..3"),
        ({"relevance": -1}, "relevance -1 must be an int in 0..3"),
        ({"relevance": 4}, "relevance 4 must be an int in 0..3"),
        ({"relevance": 1.0}, "relevance 1.0 must be an int"),
        ({"relevance": "1"}, "relevance '1' must be an int"),
        ({"source": "view"}, "source 'view' is not one of click, judgment, qrels"),
        ({"source": None}, "source None is not one of"),
        ({"rank": 0}, "rank 0 must be None or an int >= 1"),
        ({"rank": -3}, "rank -3 must be"),
        ({"rank": True}, "rank True must be"),
        ({"rank": 1.5}, "rank 1.5 must be"),
        ({"at": "yesterday"}, "at 'yesterday' is not an ISO-8601 time"),
        ({"at": "2026-01-01T10:00:00"}, "at '2026-01-01T10:00:00' has no UTC offset"),
        ({"at": 1.7e12}, "at 1700000000000.0 is outside 1970 .. now \\+ 1 day"),
        ({"at": -5}, "at -5 is outside 1970"),
        ({"at": math.nan}, "at nan is outside 1970"),
        ({"at": True}, "at True of type bool is not a time"),
        ({"at": [1]}, "at \\[1\\] of type list is not a time"),
        ({"extra": 1}, "unknown key\\(s\\) \\['extra'\\]"),
        ({"doc_id": ...}, "missing key\\(s\\) \\['doc_id'\\]"),
    ],
)
def test_invalid_row_refused_nothing_stored(eng, change, match):
    bad = {k: v for k, v in {**GOOD, **change}.items() if v is not ...}
    with pytest.raises(FeedbackError, match="feedback row #1: " + match) as exc:
        eng.feedback_batch([GOOD, bad])  # the good row first: all or nothing
    assert "\n" not in str(exc.value)
    assert eng.feedback_store.count() == 1 and [q.query for q in eng.feedback_store.queries()] == ["cats"]
    if set(bad) <= set(FIELDS) and {"query", "doc_id"} <= set(bad):  # the single-row call refuses it the same way
        with pytest.raises(FeedbackError, match="feedback: " + match):
            eng.feedback(**bad)
    assert eng.feedback_store.count() == 1 and eng.stats()["feedback"]["stored"] == 1


def test_a_row_that_is_not_a_dict(eng):
    with pytest.raises(FeedbackError, match="feedback row #0: expected a dict"):
        eng.feedback_batch([("aspirin", "d1", 1)])
    assert eng.feedback_store.count() == 1


def test_max_relevance_is_a_setting(tmp_path):
    e = _engine(tmp_path, memory=True, feedback__max_relevance=1)
    e.ingest(TOY_DOCS)
    with pytest.raises(FeedbackError, match="relevance 2 must be an int in 0..1"):
        e.feedback("aspirin", "d1", 2)
    e.feedback("aspirin", "d1", 1)
    assert e.feedback_store.count() == 1
    e.close()


def test_accepted_forms(eng):
    eng.ingest([("7", "a document with an integer id")])
    eng.feedback_batch([
        {"query": "q int id", "doc_id": 7},
        {"query": "q iso", "doc_id": "d4", "at": "2026-01-02T03:04:05Z", "relevance": 0, "source": "judgment"},
        {"query": "q epoch", "doc_id": "d5", "at": 1_700_000_000, "rank": 3, "source": "qrels"},
    ])
    rows = {r["query"]: r for r in eng.feedback_store.export()}
    assert rows["q iso"]["at"] == 1767323045.0 and rows["q iso"]["relevance"] == 0
    assert rows["q epoch"]["at"] == 1_700_000_000.0 and rows["q epoch"]["rank"] == 3
    assert rows["q int id"]["doc_id"] == "7" and rows["q int id"]["relevance"] == 1 and rows["q int id"]["source"] == "click" and rows["q int id"]["rank"] is None


def test_dedup_replaces_and_counts(eng):
    eng.feedback("Aspirin  Fever", "d1", 1, rank=4, at=1_700_000_000)
    eng.feedback("aspirin fever", "d1", 3, rank=1)  # same normalised query, doc and source: replaces
    eng.feedback("aspirin fever", "d1", 0, source="judgment")  # another source: its own row
    assert eng.feedback_store.count() == 3
    s = eng.stats()["feedback"]
    assert s == {"rows": 3, "stored": 4, "replaced": 1, "dropped": 0}
    rows = [r for r in eng.feedback_store.export() if r["doc_id"] == "d1"]
    assert [(r["query"], r["relevance"], r["source"], r["rank"]) for r in rows] == [("aspirin fever", 3, "click", 1), ("aspirin fever", 0, "judgment", None)]
    assert rows[0]["at"] > 1_700_000_000  # the latest time kept
    # a duplicate within one batch: the later row wins
    assert eng.feedback_batch([{"query": "dogs", "doc_id": "d5", "relevance": 1}, {"query": "DOGS", "doc_id": "d5", "relevance": 2}]) == 2
    assert eng.feedback_store.count() == 4 and eng.stats()["feedback"]["replaced"] == 2
    q = {x.key: x for x in eng.feedback_store.queries()}
    assert q["dogs"].query == "DOGS" and q["dogs"].judgments == {"d5": 2}
    assert q["aspirin fever"].judgments == {"d1": 0}  # latest over all sources
    assert {x.key: x.judgments for x in eng.feedback_store.queries(sources=["click"])}["aspirin fever"] == {"d1": 3}


def test_bound_drops_oldest_written(tmp_path):
    e = _engine(tmp_path, memory=True, feedback__max_rows=3)
    e.ingest(TOY_DOCS)
    for i in range(1, 4):
        e.feedback(f"q{i}", f"d{i}")
    e.feedback("q1", "d1", 2)  # a replacement becomes the newest row: q2 is now the oldest
    e.feedback("q4", "d4")
    assert [r["query"] for r in e.feedback_store.export()] == ["q3", "q1", "q4"]
    assert e.stats()["feedback"] == {"rows": 3, "stored": 5, "replaced": 1, "dropped": 1}
    assert e.feedback_batch([{"query": f"b{i}", "doc_id": "d5"} for i in range(5)]) == 5  # a batch over the bound keeps its newest rows
    assert [r["query"] for r in e.feedback_store.export()] == ["b2", "b3", "b4"]
    assert e.feedback_store.stats()["totals"] == {"stored": 10, "replaced": 1, "dropped": 6}
    e.close()


def test_round_trip_through_restart(tmp_path):
    e = _engine(tmp_path)
    e.ingest(TOY_DOCS)
    rows = [{"query": f"query {i}", "doc_id": f"d{1 + i % 5}", "relevance": i % 4, "source": ("click", "judgment", "qrels")[i % 3], "rank": 1 + i} for i in range(30)]
    e.feedback_batch(rows)
    e.feedback("query 0", "d1", 3)  # replaces row 0
    before, queries = list(e.feedback_store.export()), e.feedback_store.queries()
    e.close()
    path = tmp_path / "feedback" / "antigravity.sqlite"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    e = _engine(tmp_path)
    assert list(e.feedback_store.export()) == before and e.feedback_store.queries() == queries
    assert e.stats()["feedback"] == {"rows": 30, "stored": 0, "replaced": 0, "dropped": 0}  # counters are per process
    st = e.feedback_store.stats()
    assert st["rows"] == 30 and st["queries"] == 30 and st["documents"] == 5 and st["totals"] == {"stored": 31, "replaced": 1, "dropped": 0}
    assert st["by_source"] == {"click": 10, "judgment": 10, "qrels": 10} and sum(st["by_relevance"].values()) == 30
    assert e.delete(["d5"]) == 1
    with pytest.raises(FeedbackError, match="document 'd5' is not stored"):  # a deleted document is refused for new rows
        e.feedback("new", "d5")
    e.close()
    with pytest.raises(Exception, match="closed"):
        e.feedback_store.count()


def test_no_feedback_file_until_the_first_row(tmp_path):
    e = _engine(tmp_path)
    e.ingest(TOY_DOCS)
    assert e.stats()["feedback"]["rows"] == 0 and e.feedback_store.queries() == [] and e.feedback_store.stats()["rows"] == 0
    assert not (tmp_path / "feedback").exists()
    e.close()
    m = _engine(tmp_path / "mem", memory=True)
    m.ingest(TOY_DOCS)
    m.feedback("aspirin", "d1")
    assert m.feedback_store.count() == 1 and m.feedback_store.stats()["path"] == ":memory:"
    assert not (tmp_path / "mem" / "feedback").exists()
    m.close()


# -- CLI ---------------------------------------------------------------------------------
@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """The real entry point in-process, the student replaced by the HashEncoder that built
    the collection; returns ``run(*args) -> (exit code, stderr)``."""
    from antigravity import cli as cli_mod

    monkeypatch.setattr("antigravity.engine.Encoder", lambda *a, **k: HashEncoder(32))
    e = _engine(tmp_path / "data")
    e.ingest(TOY_DOCS)
    e.close()

    def run(*args: str) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["antigravity", *args, "--data-dir", str(tmp_path / "data")])
        try:
            cli_mod.main()
            code = 0
        except SystemExit as exc:
            code = exc.code
        return code, capsys.readouterr().err

    return run


def _stored(tmp_path) -> list[dict]:
    e = _engine(tmp_path / "data")
    try:
        return list(e.feedback_store.export())
    finally:
        e.close()


def test_cli_import_jsonl(cli, tmp_path):
    f = tmp_path / "fb.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in [
        {"query": "aspirin fever", "doc_id": "d1", "relevance": 2},
        {"query": "cats", "doc_id": "d2", "relevance": 0, "source": "click", "rank": 3, "at": "2026-01-01T00:00:00+00:00"},
        {"query": "Aspirin fever", "doc_id": "d1", "relevance": 3},
    ]) + "\n\n")
    code, err = cli("feedback", "import", str(f))
    assert code == 0, err
    assert "stored 3 feedback rows (1 replaced an earlier row, 0 oldest dropped" in " ".join(err.split())
    rows = _stored(tmp_path)
    assert [(r["query"], r["doc_id"], r["relevance"], r["source"]) for r in rows] == [("cats", "d2", 0, "click"), ("Aspirin fever", "d1", 3, "judgment")]


@pytest.mark.parametrize(
    "line3,match",
    [
        ('{"query": "dogs", "doc_id": "d5", "relevance": 9}', "fb.jsonl:3: relevance 9 must be an int in 0..3"),
        ('{"query": "dogs", "doc_id": "nope", "relevance": 1}', "fb.jsonl:3: document 'nope' is not stored"),
        ('{"query": "dogs", "doc_id": "d5"}', "fb.jsonl:3: missing key\\(s\\) \\['relevance'\\]"),
        ('{"query": "dogs", "doc_id": "d5", "relevance": 1, "source": "view"}', "fb.jsonl:3: source 'view'"),
        ('{"query": "dogs", "doc_id": "d5", "relevance": 1', "fb.jsonl:3: invalid JSON"),
        ('["dogs", "d5", 1]', "fb.jsonl:3: expected a JSON object"),
    ],
)
def test_cli_import_bad_line_stores_nothing(cli, tmp_path, line3, match):
    import re

    f = tmp_path / "fb.jsonl"
    f.write_text('{"query": "aspirin", "doc_id": "d1", "relevance": 1}\n{"query": "cats", "doc_id": "d2", "relevance": 1}\n' + line3 + "\n")
    code, err = cli("feedback", "import", str(f))
    assert code == 2 and re.search(match, err), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert _stored(tmp_path) == []


def test_cli_import_beir_qrels(cli, tmp_path, toy_beir):
    code, err = cli("feedback", "import", "--beir", str(toy_beir), "--split", "train")
    assert code == 0, err
    assert "stored 2 feedback rows (0 replaced" in " ".join(err.split())
    rows = _stored(tmp_path)
    assert [(r["query"], r["doc_id"], r["relevance"], r["source"]) for r in rows] == [("dogs walks", "d5", 1, "qrels"), ("body temperature infection", "d4", 1, "qrels")]
    code, err = cli("feedback", "import", "--beir", str(toy_beir), "--split", "test", "--source", "judgment")
    assert code == 0, err
    rows = _stored(tmp_path)
    assert len(rows) == 5 and ("aspirin fever pain", "d1", "judgment") in {(r["query"], r["doc_id"], r["source"]) for r in rows}
    assert all("SUPPORT" not in json.dumps(r) for r in rows)  # query metadata is never read


def test_cli_import_beir_unknown_document_and_arguments(cli, tmp_path, toy_beir):
    (toy_beir / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq4\td5\t1\nq5\td99\t1\n")
    code, err = cli("feedback", "import", "--beir", str(toy_beir))
    assert code == 2 and "train.tsv: query 'q5', document 'd99': document 'd99' is not stored" in " ".join(err.split()), err
    assert _stored(tmp_path) == []
    code, err = cli("feedback", "import")
    assert code == 2 and "either a JSONL FILE or --beir DIR" in err
    code, err = cli("feedback", "import", "--beir", str(tmp_path / "none"))
    assert code == 2 and "does not exist" in err


def test_damaged_database_is_a_store_error(tmp_path):
    from antigravity.core.errors import StoreError

    e = _engine(tmp_path)
    e.ingest(TOY_DOCS)
    path = tmp_path / "feedback" / "antigravity.sqlite"
    path.parent.mkdir(mode=0o700)
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="feedback database .*antigravity.sqlite.*not a database"):
        e.feedback("aspirin", "d1")
    e.close()


def _acknowledged(tmp_path, n: int = 5):
    e = _engine(tmp_path)
    e.ingest(TOY_DOCS)
    for i in range(n):
        e.feedback(f"query {i}", f"d{1 + i % 5}", 1, source="judgment")
    return e


def _older_copy(path):
    """Replace the database by the copy saved after the first rows (``.old``)."""
    path.with_name("old.sqlite").replace(path)


@pytest.mark.parametrize("damage", ["truncated", "deleted", "older copy"])
def test_a_database_that_lost_acknowledged_rows_is_refused_not_read_as_empty(tmp_path, damage):
    import os

    from antigravity.core.errors import StoreError

    e = _acknowledged(tmp_path, 2)
    path = tmp_path / "feedback" / "antigravity.sqlite"
    e.close()
    path.with_name("old.sqlite").write_bytes(path.read_bytes())  # a backup holding 2 rows
    e = _engine(tmp_path)
    for i in range(2, 5):
        e.feedback(f"query {i}", f"d{1 + i % 5}", 1, source="judgment")
    assert e.feedback_store.count() == 5
    e.close()
    for extra in ("-wal", "-shm"):
        path.with_name(path.name + extra).unlink(missing_ok=True)
    {"truncated": lambda: os.truncate(path, 0), "deleted": path.unlink, "older copy": lambda: _older_copy(path)}[damage]()
    damaged = path.read_bytes() if path.exists() else None
    e = _engine(tmp_path)
    for read in (lambda: e.stats()["feedback"], e.feedback_store.queries, e.feedback_store.count):
        with pytest.raises(StoreError, match=r"at least 5 were acknowledged"):
            read()
    with pytest.raises(StoreError, match=r"at least 5"):  # nor written over
        e.feedback("new", "d1")
    e.close()
    assert (path.read_bytes() if path.exists() else None) == damaged  # a refused file is left as found
    for f in (path, path.with_name(path.name + ".bound")):  # starting empty on purpose: delete both
        f.unlink(missing_ok=True)
    e = _engine(tmp_path)
    assert e.feedback_store.count() == 0
    e.feedback("new", "d1")
    assert e.feedback_store.count() == 1
    e.close()


@pytest.mark.parametrize("content", [b"", b"{", b'{"stored": -1}', b'{"stored": true}', b'{"rows": 3}'])
def test_a_damaged_bound_file_is_refused(tmp_path, content):
    from antigravity.core.errors import StoreError

    _acknowledged(tmp_path).close()
    (tmp_path / "feedback" / "antigravity.sqlite.bound").write_bytes(content)
    e = _engine(tmp_path)
    with pytest.raises(StoreError, match="feedback bound file .*antigravity.sqlite.bound.* damaged"):
        e.feedback_store.count()
    e.close()


def test_the_bound_lags_at_most_by_half_and_is_exact_after_close(tmp_path):
    e = _acknowledged(tmp_path, 0)
    bound = tmp_path / "feedback" / "antigravity.sqlite.bound"
    seen = []
    for i in range(9):
        e.feedback(f"query {i}", "d1", 1, source="judgment")
        seen.append(json.loads(bound.read_text())["stored"])
    assert seen == [1, 2, 2, 4, 4, 4, 4, 8, 8]  # written when the total doubles: O(log n) writes
    e.close()
    assert json.loads(bound.read_text())["stored"] == 9
