"""The bad-input catalogue (docs/bad-input.md): every case gets a typed error (or the
documented safe behaviour) and leaves what is stored intact. CLI cases also check a non-zero
exit with a one-line message and no traceback. Each case id appears in docs/bad-input.md."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from antigravity import AntigravityEngine
from antigravity.core.errors import (
    AdaptationError,
    CheckpointError,
    ConfigurationError,
    DocumentError,
    EmptyCorpusError,
    ModelNotFoundError,
    QueryError,
    StoreError,
)
from antigravity.settings import Settings
from tests.conftest import HashEncoder
from tests.test_sedimentation import _corpus, _queries

ROOT = Path(__file__).resolve().parents[1]


class NaNEncoder(HashEncoder):
    def encode_uncached(self, texts, show_progress=False):
        out = super().encode_uncached(texts)
        out[0, 0] = np.nan
        return out


class ZeroEncoder(HashEncoder):
    def encode_uncached(self, texts, show_progress=False):
        out = super().encode_uncached(texts)
        out[-1] = 0.0
        return out


@pytest.fixture
def live(tmp_path):
    """A persistent engine holding 120 documents and a promoted adapter version 1."""
    e = AntigravityEngine(
        data_dir=str(tmp_path), store__location=str(tmp_path / "qdrant"), encoder=HashEncoder(32),
        adaptation__rank=8, adaptation__epochs=5, adaptation__signal="anisotropy", gate__enabled=False,
    )
    e.ingest(_corpus())
    e.search_batch(_queries())
    assert e.run_sedimentation_cycle().promoted
    yield e
    e.close()


def _snapshot(e):
    return (e.count(), e.served_version.version, e.settings.mode, e.settings.teacher.weight, [h.doc_id for h in e.search("fever aspirin", k=5, record=False)],
            e.stats()["traffic_buffered"])  # a refused search records no traffic


# -- API: (case id, call on the live engine, error type, message pattern) -------------------
API_CASES = [
    ("doc-not-a-dict", lambda e: e.ingest([42]), DocumentError, "must be a dict"),
    ("doc-missing-id", lambda e: e.ingest([{"text": "x"}]), DocumentError, "needs '_id' and 'text'"),
    ("doc-missing-text", lambda e: e.ingest([{"_id": "x"}]), DocumentError, "needs '_id' and 'text'"),
    ("doc-text-not-str", lambda e: e.ingest([{"_id": "x", "text": 3}]), DocumentError, "'text' must be a string"),
    ("doc-title-not-str", lambda e: e.ingest([{"_id": "x", "text": "t", "title": ["a"]}]), DocumentError, "'title' must be a string"),
    ("doc-empty-id", lambda e: e.ingest([{"_id": "", "text": "t"}]), DocumentError, "invalid id"),
    ("doc-bool-id", lambda e: e.ingest([(True, "t")]), DocumentError, "invalid id"),
    ("doc-float-id", lambda e: e.ingest([(1.5, "t")]), DocumentError, "invalid id"),
    ("doc-duplicate-id-in-call", lambda e: e.ingest([("x", "a"), ("x", "b")]), DocumentError, "duplicate document id 'x'"),
    ("ingest-nothing", lambda e: e.ingest([]), EmptyCorpusError, "no documents"),
    ("ingest-batch-size-zero", lambda e: e.ingest([("x", "a")], batch_size=0), DocumentError, "batch_size must be >= 1"),
    ("query-empty", lambda e: e.search(""), QueryError, "empty"),
    ("query-whitespace", lambda e: e.search("   \n"), QueryError, "empty"),
    ("query-not-str", lambda e: e.search(None), QueryError, "must be a string"),
    ("query-bytes", lambda e: e.search(b"fever"), QueryError, "must be a string"),
    ("k-zero", lambda e: e.search("fever", k=0), QueryError, "k must be an integer >= 1"),
    ("k-negative", lambda e: e.search("fever", k=-3), QueryError, "k must be an integer >= 1"),
    ("k-float", lambda e: e.search("fever", k=2.5), QueryError, "k must be an integer >= 1"),
    ("k-bool", lambda e: e.search("fever", k=True), QueryError, "k must be an integer >= 1"),
    ("k-huge", lambda e: e.search("fever", k=2**64), QueryError, "k must be an integer >= 1 and <= 2147483647, got 18446744073709551616"),
    ("k-too-long-to-print", lambda e: e.search("fever", k=10**5000), QueryError, r"got an integer of 16610 bits"),
    ("k-huge-vectors", lambda e: e.search_vectors(np.ones((1, 32), np.float32), k=2**63), QueryError, "<= 2147483647"),
    ("doc-id-int-too-long", lambda e: e.ingest([(10**5000, "t")]), DocumentError, "too long to store as an id"),
    ("get-id-int-too-long", lambda e: e.get(10**5000), DocumentError, "too long to store as an id"),
    ("doc-payload-int-beyond-64-bits", lambda e: e.ingest([{"_id": "x", "text": "t", "n": 2**70}]), DocumentError, "'n' holds an int that does not fit in 64 bits"),
    ("doc-payload-int-below-64-bits", lambda e: e.ingest([{"_id": "x", "text": "t", "m": {"n": [-(2**63) - 1]}}]), DocumentError, "'m.n' holds an int that does not fit in 64 bits"),
    ("batch-given-a-string", lambda e: e.search_batch("fever"), QueryError, "single string"),
    ("query-vector-nan", lambda e: e.search_vectors(np.full((1, 32), np.nan, np.float32)), QueryError, "NaN"),
    ("query-vector-wrong-dim", lambda e: e.search_vectors(np.ones((1, 7), np.float32)), QueryError, r"shape \(m, 32\)"),
    ("query-vector-1d", lambda e: e.search_vectors(np.ones(32, np.float32)), QueryError, "shape"),
    ("query-vector-zero", lambda e: e.search_vectors(np.vstack([np.ones((1, 32)), np.zeros((1, 32))]).astype(np.float32)), QueryError, r"#1 is all zeros"),
    ("search-vectors-texts-too-few", lambda e: e.search_vectors(np.ones((2, 32), np.float32), texts=["fever"]), QueryError, "1 texts for 2 query vectors"),
    ("search-vectors-texts-not-str", lambda e: e.search_vectors(np.ones((2, 32), np.float32), texts=["fever", 1]), QueryError, "query #1 must be a string"),
    ("search-vectors-texts-a-string", lambda e: e.search_vectors(np.ones((1, 32), np.float32), texts="fever"), QueryError, "got a single str"),
    ("mode-unknown", lambda e: e.set_mode("turbo"), ConfigurationError, "mode = 'turbo'"),
    ("teacher-weight-above-1", lambda e: e.set_mode("hybrid", teacher_weight=1.5), ConfigurationError, "teacher.weight = 1.5"),
    ("teacher-weight-negative", lambda e: e.set_mode("hybrid", teacher_weight=-0.1), ConfigurationError, "teacher.weight = -0.1"),
    ("teacher-weight-nan", lambda e: e.set_mode("hybrid", teacher_weight=math.nan), ConfigurationError, "teacher.weight"),
    ("teacher-weight-not-number", lambda e: e.set_mode("hybrid", teacher_weight="lots"), ConfigurationError, "teacher.weight = 'lots'"),
    ("rollback-unknown-version", lambda e: e.rollback(99), AdaptationError, "unknown adapter version 99"),
    ("rollback-version-not-int", lambda e: e.rollback("1"), AdaptationError, "must be an int"),
    ("distill-temperature-zero", lambda e: e.run_offline_distillation(["q a", "q b"], config=_cfg(temperature=0.0)), ConfigurationError, "temperature = 0.0"),
    ("reload-changes-student", lambda e: e.reload_settings(student__name="paraphrase-MiniLM-L3-v2"), ConfigurationError, "cannot change student.name"),
    ("reload-changes-store", lambda e: e.reload_settings(store__collection="other"), ConfigurationError, "cannot change store.collection"),
    ("validation-length-mismatch", lambda e: e.set_validation(["q1", "q2"], np.ones((1, 32), np.float32), {"q1": {}, "q2": {}}), QueryError, "2 query ids but 1 vectors"),
    ("validation-without-qrels", lambda e: e.set_validation(["q1"], np.ones((1, 32), np.float32), {}), QueryError, "without qrels"),
]


def _cfg(**kw):
    from antigravity.adaptation.distillation import DistillationConfig

    return DistillationConfig(**kw)


@pytest.mark.parametrize("case,call,exc,match", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_bad_input(live, case, call, exc, match):
    before = _snapshot(live)
    with pytest.raises(exc, match=match):
        call(live)
    assert _snapshot(live) == before  # nothing stored, served or configured changed


def test_student_zero_vectors_rejected_nothing_written(tmp_path):  # case: student-zero-output
    e = AntigravityEngine(data_dir=str(tmp_path), store__location=":memory:", encoder=ZeroEncoder(32))
    with pytest.raises(DocumentError, match=r"all-zero vectors for documents \['b'\]"):
        e.ingest([("a", "fever"), ("b", "cats")])
    assert e.count() == 0
    e.close()


def test_student_nan_vectors_rejected_nothing_written(tmp_path):  # case: student-nan-output
    e = AntigravityEngine(data_dir=str(tmp_path), store__location=":memory:", encoder=NaNEncoder(32))
    with pytest.raises(DocumentError, match="non-finite vectors for documents"):
        e.ingest([("a", "fever"), ("b", "cats")])
    assert e.count() == 0
    e.close()


class ShortEncoder(HashEncoder):
    """Returns one row too few for any batch after the first (a broken student)."""

    def __init__(self, dim):
        super().__init__(dim)
        self.batches = 0

    def encode_uncached(self, texts, show_progress=False):
        out = super().encode_uncached(texts)
        self.batches += 1
        return out if self.batches == 1 else out[:-1]


def test_student_wrong_shape_rejected_nothing_written(tmp_path):  # case: student-wrong-shape
    e = AntigravityEngine(data_dir=str(tmp_path), store__location=":memory:", encoder=ShortEncoder(32))
    docs = [(f"d{i}", f"word{i} fever") for i in range(700)]  # two encode batches: the second is short
    with pytest.raises(DocumentError, match=r"returned shape \(187, 32\) for 188 documents"):
        e.ingest(docs)
    assert e.count() == 0
    e.close()


def test_enormous_document_is_stored_and_truncated_by_the_model(live):  # case: doc-enormous
    text = "fever aspirin " * 200_000  # 2.8 MB
    live.ingest([{"_id": "huge", "title": "Huge", "text": text}])
    assert live.count() == 121 and live.document_fields("huge")["text"] == text  # full text kept in the payload
    assert any(h.doc_id == "huge" for h in live.search("fever aspirin", k=5, record=False))


@pytest.mark.models
def test_enormous_document_truncated_to_max_seq_length(tmp_path):  # case: doc-enormous (real model)
    from antigravity.encoders.model import Encoder
    from antigravity.settings import Settings

    enc = Encoder("paraphrase-MiniLM-L3-v2", cache_dir=Settings.load().resolved_cache_dir)
    words = [f"word{i}" for i in range(20_000)]
    full, prefix = enc.encode_uncached([" ".join(words), " ".join(words[:1000])])  # no embedding cache writes
    np.testing.assert_allclose(full, prefix, atol=1e-5)  # only the first max_seq_length tokens count


def test_unknown_student_model(tmp_path):  # case: model-unknown
    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        AntigravityEngine(data_dir=str(tmp_path), store__location=":memory:", student__name="no-such-model")


def test_unreachable_store_server(tmp_path):  # case: store-unreachable
    with pytest.raises(StoreError, match="cannot open Qdrant store at 'http://127.0.0.1:9'"):
        AntigravityEngine(data_dir=str(tmp_path), store__url="http://127.0.0.1:9", store__timeout_s=2, encoder=HashEncoder(32))


def test_store_folder_locked_by_another_engine(live, tmp_path):  # case: store-locked
    with pytest.raises(StoreError, match="cannot open Qdrant store"):
        AntigravityEngine(data_dir=str(tmp_path), store__location=str(tmp_path / "qdrant"), encoder=HashEncoder(32))
    assert live.count() == 120


def test_student_dimension_differs_from_store(live, tmp_path):  # case: store-dim-mismatch
    live.close()
    with pytest.raises(StoreError, match="holds 32-d vectors; the student makes 16-d"):  # refused at open (manifest)
        AntigravityEngine(data_dir=str(tmp_path), store__location=str(tmp_path / "qdrant"), encoder=HashEncoder(16, name="h16"), adaptation__persist=False, adaptation__rank=8)
    e = AntigravityEngine(data_dir=str(tmp_path), store__location=str(tmp_path / "qdrant"), encoder=HashEncoder(32))
    assert e.count() == 120
    e.close()


def test_checkpoint_for_another_student(live, tmp_path):  # case: checkpoint-mismatch
    live.close()
    with pytest.raises(CheckpointError, match="trained for student 'hash-encoder'"):
        AntigravityEngine(data_dir=str(tmp_path), store__location=str(tmp_path / "qdrant"), encoder=HashEncoder(32, name="other"))


def test_mode_needing_teacher_without_one(tmp_path):  # case: teacher-mode-without-teacher
    with pytest.raises(ConfigurationError, match="mode 'hybrid' needs a teacher"):
        Settings.load(mode="hybrid", teacher__name="none")


# -- config files and environment ----------------------------------------------------------
CONFIG_CASES = [
    ("config-unknown-key", "colour = 'blue'\n", "colour = 'blue': unknown setting"),
    ("config-unknown-nested-key", "[teacher]\nwieght = 0.5\n", "teacher.wieght = 0.5: unknown setting"),
    ("config-unknown-section", "[cycles]\nn = 3\n", "cycles = .*unknown setting"),
    ("config-wrong-type", "[adaptation]\nrank = 'big'\n", "adaptation.rank = 'big'"),
    ("config-payload-index-reserved", "[store.payload_indexes]\n_ag_empty = 'bool'\n", "payload index field '_ag_empty' must be a non-empty payload key"),
    ("config-weight-out-of-range", "[teacher]\nweight = 1.5\n", "teacher.weight = 1.5: Input should be less than or equal to 1"),
    ("config-rank-zero", "[adaptation]\nrank = 0\n", "adaptation.rank = 0"),
    ("config-negative-batch", "[student]\nbatch_size = -4\n", "student.batch_size = -4"),
    ("config-bad-collection-name", "[store]\ncollection = 'a b/c'\n", "store.collection = 'a b/c'"),
    ("config-half-written", "mode = \"hyb\n[teacher\n", "is not valid TOML"),
    ("config-not-utf8", b"\xff\xfe mode = 1".decode("latin-1"), "not valid TOML"),
    ("config-mode-unknown", "mode = 'fast'\n", "mode = 'fast'"),
]


@pytest.mark.parametrize("case,text,match", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_config_file_bad_input(tmp_path, case, text, match):
    p = tmp_path / "bad.toml"
    p.write_bytes(text.encode("latin-1") if case == "config-not-utf8" else text.encode())
    with pytest.raises(ConfigurationError, match=match):
        Settings.load(p)


def test_config_file_missing(tmp_path):  # case: config-missing
    with pytest.raises(ConfigurationError, match="does not exist"):
        Settings.load(tmp_path / "nope.toml")


def test_config_file_is_a_directory(tmp_path):  # case: config-is-directory
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        Settings.load(tmp_path)


@pytest.mark.parametrize(
    "case,env,match",
    [
        ("env-mode-unknown", {"ANTIGRAVITY_MODE": "turbo"}, "mode = 'turbo'"),
        ("env-weight-not-number", {"ANTIGRAVITY_TEACHER__WEIGHT": "abc"}, "teacher.weight = 'abc'"),
        ("env-weight-out-of-range", {"ANTIGRAVITY_TEACHER__WEIGHT": "2"}, "teacher.weight = '2'"),
        ("env-bool-garbage", {"ANTIGRAVITY_GATE__ENABLED": "maybe"}, "gate.enabled = 'maybe'"),
        ("env-temperature-inf", {"ANTIGRAVITY_TEACHER__TEMPERATURE": "inf"}, "teacher.temperature = 'inf': .*finite"),
        ("env-store-url-empty", {"ANTIGRAVITY_STORE__URL": ""}, "store.url = '': .*URL is empty"),
        ("env-teacher-base-url-blank", {"ANTIGRAVITY_TEACHER__BASE_URL": "  "}, "teacher.base_url = '  ': .*URL is empty"),
        ("env-one-underscore", {"ANTIGRAVITY_STORE_URL": "http://qdrant:6333"}, r"ANTIGRAVITY_STORE_URL \(did you mean ANTIGRAVITY_STORE__URL\?\) is not a setting"),
        ("env-misspelt-setting", {"ANTIGRAVITY_MODEE": "hybrid"}, r"ANTIGRAVITY_MODEE \(did you mean ANTIGRAVITY_MODE\?\)"),
        ("env-unknown-key", {"ANTIGRAVITY_XYZZY": "1", "ANTIGRAVITY_STOREURL": "x"}, r"variables ANTIGRAVITY_STOREURL.*, ANTIGRAVITY_XYZZY are not a setting"),
        ("env-unknown-nested-key", {"ANTIGRAVITY_GATE__ALPH": "0.1"}, r"gate.alph = '0.1': unknown setting"),
    ],
    ids=lambda x: x if isinstance(x, str) and x.startswith("env-") else "",
)
def test_environment_bad_input(monkeypatch, case, env, match):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigurationError, match=match):
        Settings.load()


# -- CLI: non-zero exit, one line, no traceback -------------------------------------------
def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-c", "from antigravity.cli import main; main()", *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300, cwd=ROOT,
    )


CLI_CASES = [
    ("cli-unknown-mode", ["benchmark", "--modes", "turbo"], None, "unknown mode"),
    ("cli-teacher-weight-out-of-range", ["benchmark", "--modes", "hybrid", "--teacher-weight", "1.5"], None, "1.5"),
    ("cli-config-validate-missing", ["config", "validate", "/no/such.toml"], None, "does not exist"),
    ("cli-config-validate-unknown-key", ["config", "validate", "{bad}"], None, "colour = 'blue': unknown setting"),
    ("cli-env-invalid", ["config", "show"], {"ANTIGRAVITY_MODE": "turbo"}, "mode = 'turbo'"),
    ("cli-index-missing-corpus", ["index", "/no/such/corpus.jsonl", "--data-dir", "{tmp}"], None, "No such file"),
    ("cli-index-corrupt-line", ["index", "{corrupt}", "--data-dir", "{tmp}"], None, r"corpus.jsonl:2"),
    ("cli-adapters-show-unknown", ["adapters", "show", "5", "--data-dir", "{tmp}"], None, "unknown adapter version 5"),
    ("cli-adapters-list-unknown-collection", ["adapters", "list", "--data-dir", "{tmp}", "--collection", "antigravty"], None,
     r"no collection 'antigravty' .*collections there: \['antigravity'\]"),
]


@pytest.mark.parametrize("case,args,env,match", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(tmp_path, case, args, env, match):
    (tmp_path / "bad.toml").write_text("colour = 'blue'\n")
    (tmp_path / "corpus.jsonl").write_text('{"_id": "a", "text": "ok"}\n{"_id": "b", "text": \n')
    args = [a.replace("{bad}", str(tmp_path / "bad.toml")).replace("{tmp}", str(tmp_path / "engine")).replace("{corrupt}", str(tmp_path / "corpus.jsonl")) for a in args]
    if case == "cli-adapters-show-unknown":
        (tmp_path / "engine" / "adapters" / "antigravity").mkdir(parents=True)  # an existing collection without that version (a missing folder: tests/test_integrity.py)
    if case == "cli-adapters-list-unknown-collection":
        (tmp_path / "engine" / "adapters" / "antigravity").mkdir(parents=True)
    r = _cli(*args, env=env)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert re.search(match, r.stderr), r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_catalogue_is_documented_and_large_enough():
    doc = (ROOT / "docs" / "bad-input.md").read_text()
    src = Path(__file__).read_text()
    ids = set(re.findall(r'\("((?:doc|ingest|query|k|batch|mode|teacher|rollback|distill|reload|validation|config|env|cli)-[a-z0-9-]+)"', src))
    ids |= set(re.findall(r"# case: ([a-z0-9-]+)", src))
    integrity = (ROOT / "tests" / "test_integrity.py").read_text()  # issue 10's cases
    ids |= set(re.findall(r'\("((?:doc|ingest|query|store|cli|secret|data|api)-[a-z0-9-]+)"', integrity))
    ids |= set(re.findall(r'"((?:cli|query)-[a-z0-9-]+-(?:dir|surrogate))"', integrity))
    ids |= set(re.findall(r"# case: ([a-z0-9-]+)", integrity))
    missing = sorted(i for i in ids if f"`{i}`" not in doc)
    assert not missing, f"docs/bad-input.md lacks {missing}"
    assert len(ids) >= 40, len(ids)


MANIFEST_DOCUMENTS_DAMAGE = [  # (variant, edit of the manifest's lower bound, how the message shows it)
    ("manifest-documents-removed", lambda m: m.pop("documents"), "'documents' is missing"),
    ("manifest-documents-true", lambda m: m.__setitem__("documents", True), "'documents' is true"),
    ("manifest-documents-negative", lambda m: m.__setitem__("documents", -5), "'documents' is -5"),
    ("manifest-documents-string", lambda m: m.__setitem__("documents", "30"), "'documents' is \"30\""),
]


@pytest.mark.parametrize("variant,edit,named", MANIFEST_DOCUMENTS_DAMAGE, ids=[c[0] for c in MANIFEST_DOCUMENTS_DAMAGE])
@pytest.mark.parametrize("backend", ["edge", "local"])
def test_damaged_manifest_lower_bound_does_not_hide_lost_documents(tmp_path, backend, variant, edit, named):
    """A store that lost 20 of its 30 documents, with a manifest whose ``documents`` field is
    missing, ``true``, negative or a string, opened as healthy (10 documents); it is now
    refused as damaged (ManifestError naming the field and the file), and the refused open
    changes neither the store nor the manifest."""
    import json

    from antigravity.core.errors import ManifestError
    from antigravity.stores import EdgeStore, QdrantStore

    def store():
        return EdgeStore(str(tmp_path / "qdrant" / "edge"), create=False) if backend == "edge" else QdrantStore(str(tmp_path / "qdrant"), create=False)

    e = AntigravityEngine(data_dir=str(tmp_path), encoder=HashEncoder(32), adaptation__rank=8, store__backend=backend)
    e.ingest([(f"{i}", f"fever aspirin word{i}") for i in range(30)])
    e.close()
    path = tmp_path / "adapters" / "antigravity" / "manifest.json"
    m = json.loads(path.read_text())
    edit(m)
    path.write_text(json.dumps(m))
    s = store()
    s.delete([str(i) for i in range(20)])  # damage behind the engine's back
    q = np.asarray(HashEncoder(32).encode(["fever aspirin word25"]), dtype=np.float32)
    before = (s.count(), [h[0] for h in s.search(q, "raw", 5)[0]], path.read_bytes())
    s.close()
    assert before[0] == 10
    with pytest.raises(ManifestError) as info:
        AntigravityEngine(data_dir=str(tmp_path), encoder=HashEncoder(32), adaptation__rank=8, store__backend=backend)
    msg = str(info.value)
    assert f"field {named}" in msg and str(path) in msg and "damaged" in msg and "--reindex" in msg and "\n" not in msg, msg
    s = store()
    try:
        assert (s.count(), [h[0] for h in s.search(q, "raw", 5)[0]], path.read_bytes()) == before
    finally:
        s.close()


def test_query_vectors_of_another_dimension_are_refused_before_the_first_ingest(tmp_path):  # case: query-vector-wrong-dim-empty-store
    """An empty store knows no dimension yet; the student's is the check, so a wrong-shaped
    query is refused (not recorded as traffic that would break every later cycle)."""
    e = AntigravityEngine(data_dir=str(tmp_path), store__location=":memory:", encoder=HashEncoder(32), adaptation__rank=8)
    try:
        with pytest.raises(QueryError, match=r"shape \(m, 32\), got \(1, 7\)"):
            e.search_vectors(np.ones((1, 7), np.float32))
        assert e.stats()["traffic_buffered"] == 0
        assert e.search_vectors(np.ones((1, 32), np.float32), k=3) == [[]]  # the right shape: an empty result of an empty store
    finally:
        e.close()


def test_an_index_failure_after_an_ingest_never_hides_its_result_nor_its_error(tmp_path, monkeypatch):  # case: ingest-index-fails
    """Payload indexes are made after the documents are written: if the store refuses one,
    the ingest still returns what it wrote (the failure logged and counted as
    ``index_errors``), and an ingest that itself failed raises its own error, not the index's."""
    e = AntigravityEngine(data_dir=str(tmp_path), store__location=":memory:", encoder=HashEncoder(32), adaptation__rank=8)

    def refuse():
        raise StoreError("index refused")

    monkeypatch.setattr(e.indexer, "ensure_payload_indexes", refuse)
    try:
        assert e.ingest(_corpus()[:10]) == 10 and e.count() == 10
        assert e.stats()["index_errors"] == 1
        with pytest.raises(DocumentError, match="invalid id"):
            e.ingest([("", "t")])
        assert e.stats()["index_errors"] == 2 and e.count() == 10
    finally:
        e.close()
