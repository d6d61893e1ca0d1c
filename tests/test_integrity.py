"""Never silently wrong (issue 10): the store knows which student built it, damage is never
mistaken for emptiness, one validation path for documents (API and CLI), secrets are never
printed, the data folder is private. Each case id (``# case:``) is a row of
docs/bad-input.md; every refused operation leaves what is stored unchanged."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from antigravity import AntigravityEngine
from antigravity.core.errors import CheckpointError, DatasetError, DocumentError, ManifestError, QueryError, StoreError
from tests.conftest import HashEncoder
from tests.test_sedimentation import _corpus, _queries

ROOT = Path(__file__).resolve().parents[1]


def _open(tmp_path, encoder=None, **kw):
    kw.setdefault("adaptation__rank", 8)
    kw.setdefault("store__location", str(tmp_path / "qdrant"))
    return AntigravityEngine(data_dir=str(tmp_path), encoder=encoder or HashEncoder(32), **kw)


@pytest.fixture
def built(tmp_path):
    """A closed persistent store: 120 documents by student 'hash-encoder' and a promoted version 1."""
    e = _open(tmp_path, adaptation__epochs=5, adaptation__signal="anisotropy", gate__enabled=False)
    e.ingest(_corpus())
    e.search_batch(_queries())
    assert e.run_sedimentation_cycle().promoted
    probe = _probe(e)
    e.close()
    return tmp_path, probe


def _probe(e) -> list:
    """Top hit and its score for five stored documents' own texts (no ties, unlike short queries)."""
    texts = dict(_corpus())
    return [(h[0].doc_id, round(h[0].score, 4)) for h in e.search_batch([texts[f"d{i}"] for i in (0, 3, 7, 11, 19)], k=1, record=False)]


def _storage(tmp_path) -> Path:
    """The store folder (either backend)."""
    return tmp_path / "qdrant"


def _digest(path: Path) -> str | None:
    """sha256 over every file under ``path`` (names and contents), ``None`` if absent."""
    if not path.exists():
        return None
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _intact(tmp_path, probe) -> None:
    """The store opens with the original student and holds what it held."""
    e = _open(tmp_path)
    assert e.count() == 120 and e.served_version.version == 1
    assert _probe(e) == probe
    e.close()


# -- 1. the collection manifest -------------------------------------------------------------
class Student(HashEncoder):
    """A stub student with every identity field settable."""

    def __init__(self, name="student-a", dim=32, revision=None, max_seq_length=None, bf16=False):
        super().__init__(dim, name=name)
        self.revision, self.max_seq_length, self.bf16 = revision, max_seq_length, bf16


@pytest.mark.parametrize(
    "other,field",
    [
        (Student(name="student-b"), "name"),  # case: store-other-student-same-dim
        (Student(revision="f00d" * 16), "revision"),  # case: store-other-student-weights
        (Student(max_seq_length=128), "max_seq_length"),  # case: store-other-max-seq-length
        (Student(bf16=True), "dtype"),  # case: store-other-dtype
    ],
    ids=["name", "revision", "max_seq_length", "dtype"],
)
def test_other_student_refused_at_open(tmp_path, other, field):
    e = _open(tmp_path, Student(), adaptation__persist=False)
    e.ingest(_corpus(50))
    probe = _probe(e)
    e.close()
    before = _digest(_storage(tmp_path))
    with pytest.raises(ManifestError, match=f"built by student 'student-a'.*running student is '{other.name}'.*differs in {field}") as exc:
        _open(tmp_path, other, adaptation__persist=False)
    assert "\n" not in str(exc.value) and "--reindex" in str(exc.value)
    assert _digest(_storage(tmp_path)) == before
    e = _open(tmp_path, Student(), adaptation__persist=False)  # the right student: untouched
    assert e.count() == 50 and _probe(e) == probe
    e.close()


def test_manifest_records_the_student(tmp_path):
    e = _open(tmp_path, Student(revision="ab" * 32, max_seq_length=64))
    assert not (tmp_path / "adapters" / "antigravity" / "manifest.json").exists()  # nothing until the first write
    e.ingest(_corpus(30))
    m = json.loads((tmp_path / "adapters" / "antigravity" / "manifest.json").read_text())
    assert m["student"] == {"name": "student-a", "revision": "ab" * 32, "dim": 32, "max_seq_length": 64, "dtype": "fp32", "normalized": True}
    assert m["store_format_version"] == 1 and m["documents"] == 30
    e.close()


def test_reindex_is_the_documented_override(built):  # case: store-reindex
    tmp_path, _ = built
    e = _open(tmp_path, Student(name="student-b"), reindex=True)
    assert e.count() == 0 and e.served_version.version == 0 and e.adapter_versions() == [0]
    e.ingest(_corpus(40))
    assert json.loads((tmp_path / "adapters" / "antigravity" / "manifest.json").read_text())["student"]["name"] == "student-b"
    e.close()
    aside = [p.name for p in (tmp_path / "adapters").iterdir() if ".replaced-" in p.name]
    assert len(aside) == 1 and (tmp_path / "adapters" / aside[0] / "v000001.json").exists()  # old adapters kept aside
    e = _open(tmp_path, Student(name="student-b"))
    assert e.count() == 40
    e.close()


def test_ingest_refuses_to_mix_students(tmp_path):  # case: ingest-other-student
    a = _open(tmp_path / "x", Student(), store__location=str(tmp_path / "shared"), adaptation__persist=False)
    a.ingest(_corpus(20))
    manifest = a.manifest.path
    data = json.loads(manifest.read_text())
    data["student"]["name"] = "someone-else"  # another process re-built the collection meanwhile
    manifest.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="built by student 'someone-else'.*nothing was written"):
        a.ingest([("new", "fever")])
    assert a.count() == 20
    a.close()


# -- 2. integrity on open: damage is never an empty store ----------------------------------
LOCAL = Path("qdrant") / "collection" / "antigravity"  # qdrant-client local mode
EDGE = Path("qdrant") / "edge" / "antigravity"  # Qdrant Edge shard


def _truncate_local(p: Path) -> None:
    (p / LOCAL / "storage.sqlite").write_bytes(b"")


def _truncate_edge_vectors(p: Path) -> None:
    for f in (p / EDGE / "segments").rglob("*"):
        if f.is_file() and "vector_storage-raw" in str(f):
            f.write_bytes(b"")


def _delete_edge_segments(p: Path) -> None:
    """Segments and WAL: with the WAL kept, Qdrant rebuilds the points from it (a repair, not damage)."""
    for seg in (p / EDGE / "segments").iterdir():
        shutil.rmtree(seg)
    shutil.rmtree(p / EDGE / "wal")


DAMAGE = [  # (case, backend, damage, error, match)
    ("store-file-truncated", "local", _truncate_local, ManifestError, "holds 0 documents but .*records at least 120"),
    ("store-meta-deleted", "local", lambda p: (p / "qdrant" / "meta.json").unlink(), ManifestError, "records 120 documents .* has no such collection"),
    ("store-collection-folder-deleted", "local", lambda p: shutil.rmtree(p / LOCAL), ManifestError, "holds 0 documents but .*records at least 120"),
    ("store-folder-deleted", "local", lambda p: shutil.rmtree(p / "qdrant"), ManifestError, "records 120 documents .* has no such collection"),
    ("edge-vectors-truncated", "edge", _truncate_edge_vectors, StoreError, "files are damaged.*--reindex"),
    ("edge-segments-and-wal-deleted", "edge", _delete_edge_segments, ManifestError, "holds 0 documents but .*records at least 120"),
    ("edge-config-deleted", "edge", lambda p: (p / EDGE / "edge_config.json").unlink(), StoreError, "holds no Qdrant Edge shard"),
    ("edge-collection-folder-deleted", "edge", lambda p: shutil.rmtree(p / EDGE), ManifestError, "records 120 documents .* has no such collection"),
    ("edge-store-folder-deleted", "edge", lambda p: shutil.rmtree(p / "qdrant"), ManifestError, "records 120 documents .* has no such collection"),
]


@pytest.mark.parametrize("case,backend,damage,error,match", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_damaged_store_is_an_error_not_an_empty_store(tmp_path, case, backend, damage, error, match):
    e = _open(tmp_path, adaptation__epochs=5, adaptation__signal="anisotropy", gate__enabled=False, store__backend=backend)
    e.ingest(_corpus())
    e.search_batch(_queries())
    assert e.run_sedimentation_cycle().promoted
    e.close()
    damage(tmp_path)
    for _ in range(2):  # refused, and still refused: the refused open repaired nothing into "empty"
        with pytest.raises(error, match=match) as exc:
            _open(tmp_path, store__backend=backend)
        assert "--reindex" in str(exc.value) and "\n" not in str(exc.value)
    assert (tmp_path / "adapters" / "antigravity" / "v000001.json").exists()  # adapters untouched


def test_collection_without_manifest(built):  # case: store-no-manifest
    tmp_path, probe = built
    (tmp_path / "adapters" / "antigravity" / "manifest.json").unlink()
    with pytest.raises(ManifestError, match="has no manifest .*antigravity adopt"):
        _open(tmp_path)
    e = _open(tmp_path, adopt=True)  # documented: adopt a collection made before manifests
    assert e.count() == 120 and e.served_version.version == 1
    e.close()
    _intact(tmp_path, probe)


def test_adopt_refuses_a_student_of_another_dimension(tmp_path):  # case: store-adopt-other-dim
    e = _open(tmp_path)
    e.ingest([(f"d{i}", f"fever aspirin {i}") for i in range(20)])
    e.close()
    (tmp_path / "adapters" / "antigravity" / "manifest.json").unlink()
    with pytest.raises(ManifestError, match=r"cannot adopt .* holds 32-d vectors, the student makes 16-d.*nothing was written"):
        _open(tmp_path, encoder=HashEncoder(16), adopt=True)
    assert not (tmp_path / "adapters" / "antigravity" / "manifest.json").exists()  # no false record
    e = _open(tmp_path, adopt=True)  # the student that built it can still adopt it
    assert e.count() == 20 and e.search("fever aspirin 3", k=1, record=False)[0].doc_id == "d3"
    e.close()


def test_manifest_corrupt(built):  # case: store-manifest-corrupt
    tmp_path, probe = built
    path = tmp_path / "adapters" / "antigravity" / "manifest.json"
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ManifestError, match="unreadable or not JSON"):
        _open(tmp_path)
    path.write_bytes(good)
    _intact(tmp_path, probe)


def test_manifest_from_a_newer_format(built):  # case: store-format-newer
    tmp_path, _ = built
    path = tmp_path / "adapters" / "antigravity" / "manifest.json"
    data = json.loads(path.read_text())
    data["store_format_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="store format version 99"):
        _open(tmp_path)


def test_checkpoints_without_store(built):  # case: store-missing-with-checkpoints
    tmp_path, _ = built
    shutil.rmtree(tmp_path / "qdrant")
    (tmp_path / "adapters" / "antigravity" / "manifest.json").unlink()
    with pytest.raises(ManifestError, match=r"adapter checkpoints \[1\] exist .* no collection"):
        _open(tmp_path)


def test_active_version_missing(built):  # case: store-active-version-missing
    tmp_path, _ = built
    (tmp_path / "adapters" / "antigravity" / "v000001.json").unlink()
    with pytest.raises(CheckpointError, match="names adapter version 1, but v000001.json is missing"):
        _open(tmp_path)


def test_crash_between_manifest_and_collection_opens(tmp_path):  # case: store-manifest-without-collection-empty
    """The manifest is written before the collection; a crash between them (manifest with 0
    documents, no collection) is not damage: the engine opens and ingests."""
    e = _open(tmp_path)
    e.manifest.create("antigravity", "x", e.student_identity, 0)
    e.close()
    e = _open(tmp_path)
    e.ingest(_corpus(10))
    assert e.count() == 10
    e.close()


# -- 3. one validation path for documents and queries --------------------------------------
@pytest.fixture
def small(tmp_path):
    e = _open(tmp_path)
    e.ingest(_corpus(30))
    yield e
    e.close()


DOC_CASES = [
    ("doc-id-lone-surrogate", [("a\ud800", "fever")], r"invalid id .*not valid Unicode"),
    ("doc-text-lone-surrogate", [{"_id": "x", "text": "fever \udc80 aspirin"}], r"document 'x': 'text' is not valid Unicode"),
    ("doc-title-lone-surrogate", [{"_id": "x", "title": "\ud83d", "text": "ok"}], r"document 'x': 'title' is not valid Unicode"),
    ("doc-id-none", [{"_id": None, "text": "t"}], "invalid id None"),
    ("doc-id-list", [(["a"], "t")], "invalid id"),
    ("doc-id-whitespace", [("   ", "t")], "invalid id"),
    ("doc-payload-datetime", [("x", "t", {"when": dt.datetime(2024, 1, 1)})], r"document 'x': payload key 'when' .*datetime.*not JSON-serialisable"),
    ("doc-payload-numpy", [("x", "t", {"score": np.float32(1.0)})], r"payload key 'score' .*float32"),
    ("doc-payload-set", [{"_id": "x", "text": "t", "tags": {"a"}}], r"payload key 'tags' .*set"),
    ("doc-payload-bytes", [{"_id": "x", "text": "t", "raw": b"\x00"}], r"payload key 'raw' .*bytes"),
    ("doc-payload-nan", [{"_id": "x", "text": "t", "score": math.nan}], r"payload key 'score' is nan"),
    ("doc-payload-nested-bad", [{"_id": "x", "text": "t", "meta": {"a": [1, {"b": object()}]}}], r"payload key 'meta.a.b'"),
    ("doc-payload-non-str-key", [("x", "t", {1: "a"})], r"payload key 1 is not a string"),
    ("doc-payload-nested-non-str-key", [{"_id": "x", "text": "t", "m": {2: "a"}}], r"non-string key 2"),
    ("doc-payload-lone-surrogate", [{"_id": "x", "text": "t", "note": "\udfff"}], r"payload key 'note' is not valid Unicode"),
    ("doc-payload-reserved-doc-id", [{"_id": "x", "text": "t", "doc_id": "y"}], r"payload key 'doc_id' is reserved"),
    ("doc-payload-reserved-flag", [{"_id": "x", "text": "t", "_ag_empty": False}], r"payload key '_ag_empty' is reserved"),
    ("doc-tuple-payload-replaces-text", [("x", "t", {"text": "other"})], r"payload key 'text' is reserved"),
    ("doc-tuple-payload-not-dict", [("x", "t", ["a"])], r"payload must be a dict"),
    ("doc-int-and-str-id-in-call", [(7, "a"), ("7", "b")], "duplicate document id '7'"),
    ("doc-bad-record-last", [*[(f"n{i}", "fever") for i in range(9)], {"_id": "bad", "text": 5}], r"'bad': 'text' must be a string"),
]


@pytest.mark.parametrize("case,docs,match", DOC_CASES, ids=[c[0] for c in DOC_CASES])
def test_document_refused_nothing_written(small, case, docs, match):
    before = small.count(), _probe(small)
    with pytest.raises(DocumentError, match=match):
        small.ingest(docs, batch_size=2)  # several batches: a late bad record still writes nothing
    assert (small.count(), _probe(small)) == before


def test_student_nan_mid_call_writes_nothing(tmp_path):  # case: student-nan-mid-call
    class NaNAt(HashEncoder):
        def encode_uncached(self, texts, show_progress=False):
            out = super().encode_uncached(texts)
            out[[i for i, t in enumerate(texts) if "poison" in t]] = np.nan
            return out

    e = AntigravityEngine(data_dir=str(tmp_path), store__location=":memory:", encoder=NaNAt(32))
    docs = [(f"d{i}", "fever") for i in range(10)] + [("p", "poison")]
    with pytest.raises(DocumentError, match=r"non-finite vectors for documents \['p'\]; nothing of this call"):
        e.ingest(docs, batch_size=2)
    assert e.count() == 0
    e.close()


def test_int_ids_are_their_decimal_string(small):  # case: doc-int-id
    small.ingest([(7, "fever aspirin")])
    small.ingest([("7", "fever aspirin dose")])  # the same document: an upsert
    assert small.count() == 31 and small.get(7)["text"] == "fever aspirin dose" and small.get("7") == small.get(7)


def test_payload_values_round_trip(small):  # case: doc-payload-json
    payload = {"n": 1, "x": 0.5, "ok": True, "none": None, "tags": ["a", "b"], "meta": {"k": [1, {"z": "é"}]}}
    small.ingest([("p", "fever", payload)])
    assert small.get("p") == {"title": "", "text": "fever", **payload}


@pytest.mark.parametrize(
    "query,match",
    [("fever \ud800", "not valid Unicode"), ("\udcff", "not valid Unicode")],
    ids=["query-lone-surrogate", "query-only-surrogate"],
)
def test_query_text_validation(small, query, match):  # case: query-lone-surrogate
    with pytest.raises(QueryError, match=match):
        small.search(query)
    with pytest.raises(QueryError, match=match):
        small.search_batch(["fever", query])


def test_empty_documents_stored_counted_never_returned(small):  # case: doc-empty-text
    small.ingest([{"_id": "e1", "title": "", "text": ""}, {"_id": "e2", "title": " ", "text": "\n"}, ("e3", "")])
    assert small.count() == 33 and small.stats()["empty_documents"] == 3
    assert small.get("e1") == {"title": "", "text": ""}
    for q in ("fever", "x", "aspirin dose trial"):
        hits = small.search(q, k=33, record=False)
        assert len(hits) == 30 and not {h.doc_id for h in hits} & {"e1", "e2", "e3"}
    small.ingest([("e3", "now it has text about fever")])  # an empty document given text becomes searchable
    assert small.stats()["empty_documents"] == 2
    assert "e3" in {h.doc_id for h in small.search("now it has text about fever", k=3, record=False)}


def test_empty_documents_survive_restart_and_cycles(tmp_path):  # case: doc-empty-restart
    e = _open(tmp_path, adaptation__epochs=3, adaptation__signal="anisotropy", gate__enabled=False)
    e.ingest([*_corpus(60), ("empty", "")])
    e.close()
    e = _open(tmp_path, adaptation__epochs=3, adaptation__signal="anisotropy", gate__enabled=False)
    assert e.stats()["empty_documents"] == 1
    e.search_batch(_queries())
    assert e.run_sedimentation_cycle().promoted
    assert all(len(h) == 10 and "empty" not in {x.doc_id for x in h} for h in e.search_batch(_queries(10, seed=4), record=False))
    e.close()


# -- CLI: the same rules, validated before anything is written ------------------------------
def _cli(*args, env=None, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-c", "from antigravity.cli import main; main()", *args],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}, timeout=300, cwd=cwd,
    )


def _one_line_error(r, match):
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    import re

    assert re.search(match, r.stderr), r.stderr


CLI_FILE_CASES = [
    ("cli-index-unencodable-text-mid-file", '{"_id": "a", "text": "ok"}\n{"_id": "b", "text": "ok"}\n{"_id": "c", "text": "bad \\ud800 text"}\n', r"corpus.jsonl:3: document 'c': 'text' is not valid Unicode"),
    ("cli-index-float-id", '{"_id": "a", "text": "ok"}\n{"_id": 1.5, "text": "ok"}\n', r"corpus.jsonl:2: document #1 has an invalid id 1.5"),
    ("cli-index-bool-id", '{"_id": true, "text": "ok"}\n', r"corpus.jsonl:1: document #0 has an invalid id True"),
    ("cli-index-null-id", '{"_id": null, "text": "ok"}\n', r"corpus.jsonl:1: document #0 has an invalid id None"),
    ("cli-index-payload-nan", '{"_id": "a", "text": "ok", "score": NaN}\n', r"corpus.jsonl:1: document 'a': payload key 'score' is nan"),
    ("cli-index-reserved-key", '{"_id": "a", "text": "ok", "doc_id": "b"}\n', r"corpus.jsonl:1: document 'a': payload key 'doc_id' is reserved"),
    ("cli-index-duplicate-id", '{"_id": "a", "text": "ok"}\n{"_id": "a", "text": "again"}\n', r"corpus.jsonl:2: duplicate document id 'a' \(first on line 1\)"),
    ("cli-index-int-and-str-id", '{"_id": 7, "text": "ok"}\n{"_id": "7", "text": "again"}\n', r"corpus.jsonl:2: duplicate document id '7'"),
    ("cli-index-invalid-utf8", b'{"_id": "a", "text": "ok"}\n{"_id": "b", "text": "\xff"}\n', r"corpus.jsonl:2: not valid UTF-8"),
    ("cli-index-not-an-object", '["a", "b"]\n', r"corpus.jsonl:1: expected a JSON object"),
]


@pytest.mark.parametrize("case,content,match", CLI_FILE_CASES, ids=[c[0] for c in CLI_FILE_CASES])
def test_cli_index_validates_the_whole_file_first(tmp_path, case, content, match):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    data = tmp_path / "engine"
    _one_line_error(_cli("index", str(corpus), "--data-dir", str(data)), match)
    assert not data.exists()  # validated before the engine opened: nothing created, nothing written


def test_cli_index_in_process_keeps_existing_documents(tmp_path, monkeypatch, capsys):  # case: cli-index-bad-file-into-existing-store
    """Against an existing store (stub student): a file with a bad record on its last line
    writes nothing, and the store holds what it held."""
    from antigravity import cli, engine as engine_mod

    monkeypatch.setattr(engine_mod, "Encoder", lambda *a, **k: HashEncoder(32))
    data = tmp_path / "engine"
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"_id": f"g{i}", "text": f"fever aspirin {i}"}) + "\n" for i in range(5)))
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps({"_id": f"b{i}", "text": "cats"}) + "\n" for i in range(300)) + '{"_id": "z", "text": "x \\ud800"}\n')

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["antigravity", *args])
        try:
            cli.main()
            return 0
        except SystemExit as exc:
            return exc.code

    assert run("index", str(good), "--data-dir", str(data), "--config", str(ROOT / "config" / "default.toml")) in (0, None)
    assert run("index", str(bad), "--data-dir", str(data)) == 2
    assert "bad.jsonl:301: document 'z'" in capsys.readouterr().err
    e = AntigravityEngine(data_dir=str(data), encoder=HashEncoder(32))
    assert e.count() == 5
    e.close()


def test_cli_index_refuses_in_memory_store(tmp_path):  # case: cli-index-in-memory
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"_id": "a", "text": "ok"}\n')
    r = _cli("index", str(corpus), "--data-dir", str(tmp_path / "engine"), env={"ANTIGRAVITY_STORE__LOCATION": ":memory:"})
    _one_line_error(r, r"needs a persistent store, but store.location = ':memory:'")


@pytest.mark.parametrize(
    "args",
    [["search", "fever"], ["get", "d1"], ["adapters", "list"], ["adapters", "show", "1"], ["adapters", "rollback", "0"], ["adopt"]],
    ids=["cli-search-missing-data-dir", "cli-get-missing-data-dir", "cli-adapters-list-missing-data-dir", "cli-adapters-show-missing-data-dir", "cli-rollback-missing-data-dir", "cli-adopt-missing-data-dir"],
)
def test_read_only_commands_never_create_a_store(tmp_path, args):  # case: cli-search-missing-data-dir
    missing = tmp_path / "typo"
    _one_line_error(_cli(*args, "--data-dir", str(missing)), "does not exist")
    assert not missing.exists()


def test_search_on_folder_without_collection(tmp_path):  # case: cli-search-no-collection
    (tmp_path / "engine").mkdir()
    _one_line_error(_cli("search", "fever", "--data-dir", str(tmp_path / "engine")), r"no store at .* does not exist|collection 'antigravity' does not exist")
    assert not (tmp_path / "engine" / "qdrant").exists()


def test_api_read_only_open_creates_nothing(tmp_path):  # case: api-open-create-false
    with pytest.raises(StoreError, match="does not exist"):
        AntigravityEngine(data_dir=str(tmp_path / "nope"), encoder=HashEncoder(32), create=False)
    assert not (tmp_path / "nope").exists()


# -- 5. security ----------------------------------------------------------------------------
def test_data_folder_is_private(tmp_path):  # case: data-dir-private
    e = AntigravityEngine(data_dir=str(tmp_path / "fresh" / "data"), encoder=HashEncoder(32))
    e.ingest(_corpus(5))
    e.close()
    for p in (tmp_path / "fresh" / "data", tmp_path / "fresh" / "data" / "qdrant"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o700, (p, oct(p.stat().st_mode))


def test_group_writable_data_folder_warns(tmp_path, caplog):  # case: data-dir-group-writable
    d = tmp_path / "shared"
    d.mkdir()
    os.chmod(d, 0o777)
    with caplog.at_level(logging.WARNING):
        e = AntigravityEngine(data_dir=str(d), encoder=HashEncoder(32))
    assert e.stats()["permission_warnings"] >= 1
    assert "writable by group and others" in caplog.text and "chmod go-w" in caplog.text
    e.close()


SECRET = "hunter2"


def test_url_credentials_never_in_store_errors(tmp_path):  # case: secret-in-store-url
    with pytest.raises(StoreError) as exc:
        AntigravityEngine(data_dir=str(tmp_path), store__url=f"http://admin:{SECRET}@127.0.0.1:9", store__timeout_s=1, encoder=HashEncoder(32))
    assert SECRET not in str(exc.value) and "***@127.0.0.1:9" in str(exc.value)


def test_url_credentials_never_in_repr_or_config_show(tmp_path):  # case: secret-in-repr
    from antigravity.settings import Settings

    s = Settings.load(store__url=f"https://u:{SECRET}@q.example:6333", teacher__base_url=f"https://t:{SECRET}@e.example/v1?api_key={SECRET}", store__api_key=SECRET)
    for text in (repr(s), str(s), repr(s.store), repr(s.teacher)):
        assert SECRET not in text and "***@q.example" in repr(s)
    r = _cli("config", "show", env={"ANTIGRAVITY_STORE__URL": f"https://u:{SECRET}@q.example:6333", "ANTIGRAVITY_TEACHER__BASE_URL": f"http://a:{SECRET}@t/v1"})
    assert r.returncode == 0 and SECRET not in r.stdout + r.stderr and "***@q.example" in r.stdout


def test_url_credentials_never_in_teacher_errors_or_logs(tmp_path, caplog):  # case: secret-in-teacher-url
    from tests.test_faults import _closed_port_url

    url = _closed_port_url().replace("http://", f"http://bob:{SECRET}@")
    e = AntigravityEngine(
        data_dir=str(tmp_path), store__location=":memory:", encoder=HashEncoder(32), adaptation__rank=8, gate__enabled=False,
        mode="hybrid", teacher__name="m", teacher__base_url=url, teacher__timeout_s=0.3, teacher__max_retries=0,
    )
    e.ingest(_corpus(30))
    e.search_batch(_queries(20))
    with caplog.at_level(logging.DEBUG):
        e.run_sedimentation_cycle()
        rep = e.run_offline_distillation(_queries(5))
    assert e.stats()["teacher_failures"]["connection"] >= 2
    assert SECRET not in caplog.text and SECRET not in rep.reason and "bob:***" not in caplog.text and "***@127.0.0.1" in caplog.text
    e.close()


def test_secret_in_invalid_setting_is_masked(tmp_path):  # case: secret-in-validation-error
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[store]\napi_key = ['{SECRET}']\n")
    r = _cli("config", "validate", str(cfg))
    _one_line_error(r, r"store.api_key = '\*+'")
    assert SECRET not in r.stderr


def test_cli_error_lines_mask_urls(tmp_path):  # case: secret-in-cli-error
    r = _cli("search", "fever", "--data-dir", str(tmp_path), env={"ANTIGRAVITY_STORE__URL": f"http://u:{SECRET}@127.0.0.1:9", "ANTIGRAVITY_STORE__TIMEOUT_S": "1"})
    _one_line_error(r, r"cannot open Qdrant store at 'http://\*\*\*@127.0.0.1:9'")
    assert SECRET not in r.stderr


@pytest.mark.models
def test_two_real_students_of_the_same_dimension(tmp_path):  # case: store-other-student-same-dim (real models)
    """The issue's probe: index with paraphrase-MiniLM-L3-v2, open with all-MiniLM-L6-v2 (both
    384-d): refused at open, one line naming both students; the store is unchanged."""
    from antigravity.settings import Settings

    cache = str(Settings.load().resolved_cache_dir)
    docs = [{"_id": f"d{i}", "title": f"Title {i}", "text": t} for i, t in enumerate(["Aspirin reduces fever.", "Cats sleep a lot.", "Vaccines train immunity."])]
    with AntigravityEngine(data_dir=str(tmp_path), cache_dir=cache, student__name="paraphrase-MiniLM-L3-v2") as e:
        e.ingest(docs)
    before = _digest(_storage(tmp_path))
    with pytest.raises(ManifestError, match=r"built by student 'paraphrase-MiniLM-L3-v2' \(384-d, revision [0-9a-f]{12}.*running student is 'all-MiniLM-L6-v2' \(384-d.*differs in name, revision"):
        AntigravityEngine(data_dir=str(tmp_path), cache_dir=cache, student__name="all-MiniLM-L6-v2")
    assert _digest(_storage(tmp_path)) == before
    with AntigravityEngine(data_dir=str(tmp_path), cache_dir=cache, student__name="paraphrase-MiniLM-L3-v2") as e:
        assert e.count() == 3 and e.search("does aspirin lower fever", k=1, record=False)[0].doc_id == "d0"
