import gzip
import json

import pytest

from antigravity.datasets import (
    TASKS,
    doc_text,
    get_task,
    load_beir,
    load_corpus,
    load_qrels,
    load_queries,
    load_task,
    resolve_task_dir,
    verify_shipped,
)
from antigravity.core.errors import AntigravityError, DatasetError, TaskNotFoundError


def test_load_toy(toy_beir):
    ds = load_beir(toy_beir, splits=("test", "train"))
    assert list(ds.corpus)[:2] == ["d1", "d2"]
    assert ds.qrels["test"]["q1"] == {"d1": 1}
    assert ds.split_queries("train") == {"q4": "dogs walks", "q5": "body temperature infection"}
    # metadata is dropped: only id -> text strings survive
    assert all(isinstance(v, str) for v in ds.queries.values())


def test_doc_text_is_title_space_text():
    assert doc_text({"title": "T", "text": "body"}) == "T body"
    assert doc_text({"title": "", "text": "body"}) == "body"


def test_corrupt_line_names_file_and_line(toy_beir):
    path = toy_beir / "corpus.jsonl"
    lines = path.read_text().splitlines()
    lines[2] = '{"_id": "d3", "text": '
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"corpus.jsonl:3"):
        load_corpus(path)


@pytest.mark.parametrize(
    "line,match",
    [
        ('{"title": "x", "text": "y"}', "needs '_id' and 'text'"),
        ('{"_id": "a"}', "needs '_id' and 'text'"),
        ('{"_id": "a", "text": 5}', "must be strings"),
        ('[1, 2]', "expected a JSON object"),
    ],
)
def test_bad_documents(tmp_path, line, match):
    p = tmp_path / "c.jsonl"
    p.write_text(line + "\n")
    with pytest.raises(DatasetError, match=match):
        load_corpus(p)


def test_duplicate_doc_id_in_corpus(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"_id": "a", "text": "x"}\n{"_id": "a", "text": "y"}\n')
    with pytest.raises(DatasetError, match="c.jsonl:2: duplicate"):
        load_corpus(p)


def test_missing_file(toy_beir):
    (toy_beir / "qrels" / "test.tsv").unlink()
    with pytest.raises(DatasetError, match="missing qrels/test.tsv"):
        load_beir(toy_beir)


def test_missing_dir(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_beir(tmp_path / "nope")


def test_bad_qrels(tmp_path):
    p = tmp_path / "q.tsv"
    p.write_text("query-id\tcorpus-id\tscore\nq1\td1\tx\n")
    with pytest.raises(DatasetError, match="q.tsv:2"):
        load_qrels(p)


def test_gzip_files(toy_beir):
    src = toy_beir / "queries.jsonl"
    with gzip.open(str(src) + ".gz", "wb") as fh:
        fh.write(src.read_bytes())
    src.unlink()
    assert load_queries(str(src) + ".gz")["q2"] == "cats sleep day"
    assert len(load_beir(toy_beir).queries) == 5


def test_unknown_task():
    with pytest.raises(TaskNotFoundError, match="unknown task 'NFCorpus'"):
        get_task("NFCorpus")
    assert issubclass(TaskNotFoundError, AntigravityError)


def test_task_resolution_order(toy_beir, monkeypatch):
    monkeypatch.setenv("ANTIGRAVITY_SCIFACT_DIR", str(toy_beir))
    assert resolve_task_dir("scifact") == toy_beir
    assert resolve_task_dir("SciFact", data_dir="/explicit") .as_posix() == "/explicit"


def test_shipped_scifact_verified_and_complete(monkeypatch):
    monkeypatch.delenv("ANTIGRAVITY_SCIFACT_DIR", raising=False)
    verify_shipped(TASKS["SciFact"])
    ds = load_task("SciFact")
    assert len(ds.corpus) == 5183 and len(ds.queries) == 1109
    assert len(ds.qrels["test"]) == 300 and len(ds.qrels["train"]) == 809
    assert sum(len(v) for v in ds.qrels["test"].values()) == 339


def test_shipped_copy_tamper_detected(tmp_path, monkeypatch):
    import shutil

    import antigravity.datasets as dsmod

    fake = tmp_path / "res"
    shutil.copytree(dsmod.RESOURCES, fake)
    with gzip.open(fake / "scifact" / "qrels" / "test.tsv.gz", "wb") as fh:
        fh.write(b"query-id\tcorpus-id\tscore\n1\t2\t1\n")
    monkeypatch.setattr(dsmod, "RESOURCES", fake)
    with pytest.raises(DatasetError, match="sha256"):
        verify_shipped(TASKS["SciFact"])


@pytest.mark.parametrize(
    "second_line,match",
    [
        ('{"_id": "q1", "text": "again"}', r"queries.jsonl:2: duplicate query id 'q1' \(first on line 1\)"),
        ('{"_id": 1, "text": "int id"}\n{"_id": "1", "text": "str id"}', r"queries.jsonl:3: duplicate query id '1'"),
        ('{"_id": 1.0, "text": "float id"}', r"queries.jsonl:2: invalid id 1.0 of type float"),
        ('{"_id": true, "text": "bool id"}', r"queries.jsonl:2: invalid id True of type bool"),
        ('{"_id": "  ", "text": "blank id"}', r"queries.jsonl:2: invalid id '  ' \(empty\)"),
        ('{"_id": "q2", "text": "   "}', r"queries.jsonl:2: query 'q2' has empty text '   '"),
    ],
)
def test_bad_queries_refused(tmp_path, second_line, match):
    p = tmp_path / "queries.jsonl"
    p.write_text('{"_id": "q1", "text": "first"}\n' + second_line + "\n")
    with pytest.raises(DatasetError, match=match):
        load_queries(p)


@pytest.mark.parametrize(
    "row,match",
    [
        ("q1\td1\t0", r"q.tsv:3: query 'q1' judges document 'd1' twice \(first on line 2\)"),
        ("q1\td1\t1", r"q.tsv:3: query 'q1' judges document 'd1' twice"),
        ("q1\t\t1", r"q.tsv:3: empty document id in row 'q1\\t\\t1'"),
        ("q1\t  \t1", r"q.tsv:3: empty document id"),
        ("\td2\t1", r"q.tsv:3: empty query id in row '\\td2\\t1'"),
    ],
)
def test_bad_qrels_rows_refused(tmp_path, row, match):
    p = tmp_path / "q.tsv"
    p.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n" + row + "\n")
    with pytest.raises(DatasetError, match=match):
        load_qrels(p)


@pytest.mark.parametrize("split", ["test", "train"])
def test_qrels_document_missing_from_corpus(toy_beir, split):
    path = toy_beir / "qrels" / f"{split}.tsv"
    path.write_text(path.read_text() + "q1\tMISSING_DOC\t2\nq2\tOTHER\t1\n")
    n = len(path.read_text().splitlines()) - 1  # line of the first bad row
    with pytest.raises(DatasetError, match=rf"{split}.tsv:{n}: document id 'MISSING_DOC' is not in corpus.jsonl \(2 such"):
        load_beir(toy_beir, splits=(split,))
