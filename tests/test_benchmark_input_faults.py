"""Bad input to the benchmark harness (``antigravity benchmark``, ``run_benchmark``,
``run_feedback_benchmark``, the BEIR qrels reader): every case is refused up front with a typed
error naming the offending value (the CLI: exit 2, one line), never a plausible wrong number,
a NaN or a silently overwritten result. Cheap: tiny BEIR folders, the hash encoder, and a stub
in place of the benchmark run for the command-line checks. Each ``# case:`` id is a row of
docs/bad-input.md."""

from __future__ import annotations

import copy
import gzip
import json
import re
import sys
from pathlib import Path

import pytest

import antigravity.harness.benchmark as hb
import antigravity.harness.feedback_benchmark as fb
from antigravity import cli
from antigravity.core.errors import ConfigurationError, DatasetError
from antigravity.datasets import load_beir, load_qrels
from antigravity.settings import Settings
from tests.conftest import HashEncoder

H = "query-id\tcorpus-id\tscore\n"


def _folder(d: Path, n: int = 12, qrels: str | bytes | None = None, train: str | None = None, name: str = "test.tsv") -> Path:
    """A BEIR folder: ``n`` documents, ``n`` queries, query i judged on document i (unless
    ``qrels`` gives the test qrels file's content, written as ``qrels/<name>``)."""
    (d / "qrels").mkdir(parents=True)
    (d / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "title": "", "text": f"document {i} word{i} topic{i % 3}"}) + "\n" for i in range(n)))
    (d / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": f"word{i} topic{i % 3}"}) + "\n" for i in range(n)))
    if qrels is None:
        qrels = H + "".join(f"q{i}\td{i}\t1\n" for i in range(n))
    path = d / "qrels" / name
    path.write_bytes(qrels.encode() if isinstance(qrels, str) else qrels)
    if train is not None:
        (d / "qrels" / "train.tsv").write_text(train)
    return d


def _settings(tmp_path, **kw) -> Settings:
    return Settings.load(data_dir=str(tmp_path / "state"), teacher__name=kw.pop("teacher__name", "none"), **kw)


def _bench(settings, dirs, **kw):
    args = dict(task=None, data_dir=[str(d) for d in dirs], split="test", modes=["baseline"], seeds=[0], cycles=0)
    return hb.run_benchmark(settings, **(args | kw))


def _feedback(settings, dirs, **kw):
    return fb.run_feedback_benchmark(settings, **(dict(task=None, data_dir=[str(d) for d in dirs], split="test", seeds=[0]) | kw))


# -- 1. serving-time fusion / prior: the benchmarks score the unfused ranking -------------------


@pytest.mark.parametrize("key,setting", [("teacher__fusion_weight", "teacher.fusion_weight"), ("feedback__prior_boost", "feedback.prior_boost")])
def test_serving_fusion_or_prior_is_refused_not_silently_ignored(tmp_path, key, setting):  # case: bench-serving-fusion-on
    d = _folder(tmp_path / "c")
    s = _settings(tmp_path, teacher__name="paraphrase-MiniLM-L3-v2", **{key: 0.5})
    for run in (_bench, _feedback):
        enc = HashEncoder(32)
        with pytest.raises(ConfigurationError, match=rf"{setting} = 0\.5: .*unfused.*mteb_search"):
            run(s, [d], encoder=enc)
        assert enc.calls == 0  # refused before any work


# -- 2. two folders of one name, or one folder twice ---------------------------------------------


def test_folders_with_one_name_or_one_folder_twice_are_refused(tmp_path):  # case: bench-data-dir-same-name
    a, b = _folder(tmp_path / "a" / "corp"), _folder(tmp_path / "b" / "corp", n=6)
    s = _settings(tmp_path)
    cases = [([a, b], rf"{a}.*{b}.*same folder name 'corp'"), ([a, a], "same folder"), ([a, tmp_path / "a" / ".." / "a" / "corp"], "same folder")]
    for dirs, match in cases:
        for run in (_bench, _feedback):
            enc = HashEncoder(32)
            with pytest.raises(ConfigurationError, match=match):
                run(s, dirs, encoder=enc)
            assert enc.calls == 0


# -- 3. no judged query to evaluate -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["header-only", "empty", "blank-lines", "gz-header-only"])
def test_qrels_without_judgments_is_a_dataset_error_naming_the_file(tmp_path, kind):  # case: bench-qrels-no-judgments
    content = {"header-only": H, "empty": "", "blank-lines": H + "\n\n", "gz-header-only": gzip.compress(H.encode())}[kind]
    name = "test.tsv.gz" if kind.startswith("gz") else "test.tsv"
    d = _folder(tmp_path / "nojudg", qrels=content, name=name)
    s = _settings(tmp_path)
    for run in (_bench, _feedback):
        with pytest.raises(DatasetError, match=rf"{d / 'qrels' / name}: .*no test qrels"):
            run(s, [d], encoder=HashEncoder(32))


def test_a_split_that_leaves_no_evaluation_query_is_refused(tmp_path):  # case: bench-split-no-evaluation-query
    d = _folder(tmp_path / "one", qrels=H + "q0\td0\t1\n")  # one judged query: cross-fitting's swapped fold evaluates none
    enc = HashEncoder(32)
    with pytest.raises(DatasetError, match=r"test\.tsv: --cross-fit needs at least 2 judged test queries"):
        _bench(_settings(tmp_path), [d], cross_fit=True, encoder=enc)
    assert enc.calls == 0


def test_cli_without_judgments_exits_2_not_nan(tmp_path, monkeypatch, capsys):
    d = _folder(tmp_path / "nojudg", qrels=H)
    code, err = _cli(monkeypatch, capsys, tmp_path, "--data-dir", str(d), "--output", str(tmp_path / "r.json"), real=True)
    assert code == 2 and "no test qrels" in err and not (tmp_path / "r.json").exists()


# -- 4. damaged qrels files ----------------------------------------------------------------------

GOOD = (H + "q0\td0\t1\nq1\td1\t2\n").encode()
DAMAGE = [  # (case, file name, bytes, message pattern)
    ("invalid-utf8", "test.tsv", GOOD + b"q2\xff\td2\t1\n", r"test\.tsv:4: not valid UTF-8 \(byte 0xff at column 3\)"),
    ("invalid-utf8-crlf", "test.tsv", GOOD.replace(b"\n", b"\r\n") + b"q2\td2\t\xc3\n", r"test\.tsv:4: not valid UTF-8"),
    ("invalid-utf8-in-gzip", "test.tsv.gz", gzip.compress(GOOD + b"\xfe"), r"test\.tsv\.gz:4: not valid UTF-8"),
    ("truncated-gzip", "test.tsv.gz", gzip.compress(GOOD * 50)[:-12], r"test\.tsv\.gz: unreadable"),
    ("not-gzip", "test.tsv.gz", GOOD, r"test\.tsv\.gz: unreadable"),
    ("gzip-corrupt-body", "test.tsv.gz", gzip.compress(GOOD * 50)[:20] + b"\xff" * 40 + gzip.compress(GOOD * 50)[60:], r"test\.tsv\.gz: unreadable"),
    ("grade-underscore", "test.tsv", H.encode() + b"q0\td0\t1_0\n", r"test\.tsv:2: relevance '1_0' is not an integer"),
    ("grade-unicode-digit", "test.tsv", H.encode() + "q0\td0\t\u0661\n".encode(), r"test\.tsv:2: relevance '\u0661' is not an integer"),
    ("grade-plus-sign", "test.tsv", H.encode() + b"q0\td0\t+1\n", r"test\.tsv:2: relevance '\+1' is not an integer"),
    ("grade-beyond-c-int", "test.tsv", H.encode() + b"q0\td0\t99999999999999999999\n", r"test\.tsv:2: relevance '99999999999999999999' is out of range"),
    ("grade-below-c-int", "test.tsv", H.encode() + b"q0\td0\t-2147483649\n", r"test\.tsv:2: relevance '-2147483649' is out of range"),
]


@pytest.mark.parametrize("case,name,data,match", DAMAGE, ids=[c[0] for c in DAMAGE])
def test_damaged_qrels_are_a_dataset_error_naming_file_and_line(tmp_path, case, name, data, match):  # case: beir-qrels-damaged
    d = _folder(tmp_path / case, qrels=data, name=name)
    with pytest.raises(DatasetError, match=match):
        load_beir(d)
    with pytest.raises(DatasetError, match=match):
        load_qrels(d / "qrels" / name)


def test_damaged_gzip_corpus_is_a_dataset_error(tmp_path):
    d = _folder(tmp_path / "c")
    raw = gzip.compress((d / "corpus.jsonl").read_bytes() * 20)
    (d / "corpus.jsonl").unlink()
    (d / "corpus.jsonl.gz").write_bytes(raw[:20] + b"\xff" * 40 + raw[60:])
    with pytest.raises(DatasetError, match=r"corpus\.jsonl\.gz: unreadable"):
        load_beir(d)


def test_valid_qrels_spellings_still_read_the_same(tmp_path):
    rows = {"q0": {"d0": 1}, "q1": {"d1": -1, "d2": 0}}
    for i, text in enumerate([
        H + "q0\td0\t1\nq1\td1\t-1\nq1\td2\t0\n",
        (H + "q0\td0\t1\nq1\td1\t-1\nq1\td2\t0\n").replace("\n", "\r\n"),
        "q0\td0\t 1\nq1\td1\t-1 \n\nq1\td2\t0",  # no header, spaces, a blank line, no final newline
        "q0\tQ0\td0\t1\nq1\t0\td1\t-1\nq1\t0\td2\t0\n",  # TREC, 4 columns
    ]):
        p = tmp_path / f"q{i}.tsv"
        p.write_bytes(text.encode())
        assert load_qrels(p) == rows
        gz = tmp_path / f"q{i}.tsv.gz"
        gz.write_bytes(gzip.compress(text.encode()))
        assert load_qrels(gz) == rows


# -- 6, 7. modes and teacher weights against the settings, before any work ----------------------


@pytest.mark.parametrize("modes", [["hybrid"], ["offline"], ["baseline", "hybrid"]])
def test_teacher_mode_without_teacher_is_refused_before_encoding(tmp_path, modes):  # case: bench-teacher-mode-without-teacher
    enc = HashEncoder(32)
    with pytest.raises(ConfigurationError, match=rf"mode '{modes[-1]}' needs a teacher"):
        _bench(_settings(tmp_path), [_folder(tmp_path / "c")], modes=modes, encoder=enc)
    assert enc.calls == 0


@pytest.mark.parametrize("weights,match", [([0.5], "hybrid mode only"), ([], "empty"), ([0.3, 0.30], "same run hybrid@0.3"), ([0.3, 0.3000001], "same run hybrid@0.3")])
def test_teacher_weights_that_would_be_ignored_or_collapsed_are_refused(tmp_path, weights, match):  # case: bench-teacher-weight-ignored
    modes = ["baseline"] if match == "hybrid mode only" else ["hybrid"]
    enc = HashEncoder(32)
    with pytest.raises(ConfigurationError, match=match):
        _bench(_settings(tmp_path, teacher__name="paraphrase-MiniLM-L3-v2"), [_folder(tmp_path / "c")], modes=modes, teacher_weights=weights, encoder=enc)
    assert enc.calls == 0


@pytest.mark.parametrize("seeds,match", [([0, 0], "seed 0 is given twice"), ([-1], "seed -1 must be an integer >= 0"), ([], "empty")])
def test_api_seeds_are_checked(tmp_path, seeds, match):
    enc = HashEncoder(32)
    with pytest.raises(ConfigurationError, match=match):
        _bench(_settings(tmp_path), [_folder(tmp_path / "c")], seeds=seeds, encoder=enc)
    assert enc.calls == 0


# -- 8. a task together with folders ------------------------------------------------------------


def test_task_with_data_dir_is_refused(tmp_path):  # case: bench-task-with-data-dir
    d = _folder(tmp_path / "mycorpus", train=H + "q2\td2\t1\n")
    for dirs in ([str(d)], [str(d), str(_folder(tmp_path / "other"))]):
        with pytest.raises(ConfigurationError, match=r"--task SciFact and --data-dir.*ANTIGRAVITY_SCIFACT_DIR"):
            hb.load_sources("SciFact", dirs, "test")


# -- the command line: values checked before any work, exit 2 -----------------------------------


class _Called(Exception):
    pass


def _cli(monkeypatch, capsys, tmp_path, *args, real: bool = False, env: dict | None = None):
    """``antigravity benchmark ARGS`` in-process through the console entry point; returns (exit
    code, stderr). Unless ``real``, the benchmark run itself is a stub recording its arguments
    (``_cli.calls``): the refusals must come before it."""
    monkeypatch.setenv("ANTIGRAVITY_DATA_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("ANTIGRAVITY_TEACHER__NAME", "none")
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(hb, "student_encoder", lambda settings: HashEncoder(32))
    monkeypatch.setattr(fb, "student_encoder", lambda settings: HashEncoder(32))
    _cli.calls = []
    if not real:
        def stub(settings, **kw):
            _cli.calls.append(kw)
            raise _Called()
        monkeypatch.setattr(hb, "run_benchmark", stub)
        monkeypatch.setattr(fb, "run_feedback_benchmark", stub)
    monkeypatch.setattr(sys, "argv", ["antigravity", "benchmark", *args])
    capsys.readouterr()
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    if _cli.calls:  # the stub ran (the entry point reports its exception as an untyped error)
        code = "ran"
    return code, capsys.readouterr().err


CLI_CASES = [  # (case, args, message)
    ("cli-bench-seeds-duplicate", ["--seeds", "0,0"], "seed 0 is given twice"),
    ("cli-bench-seeds-negative", ["--seeds=-1"], "seed -1 must be an integer >= 0"),
    ("cli-bench-seeds-empty-item", ["--seeds", "0,,1"], "empty item"),
    ("cli-bench-teacher-weight-duplicate", ["--modes", "hybrid", "--teacher", "x", "--teacher-weight", "0.3,0.30"], "teacher weights 0.3 and 0.3 are the same run hybrid@0.3"),
    ("cli-bench-teacher-weight-empty", ["--modes", "hybrid", "--teacher", "x", "--teacher-weight", ","], "--teacher-weight is empty"),
    ("cli-bench-teacher-weight-without-hybrid", ["--teacher-weight", "0.5"], "used by the hybrid mode only, which is not among the modes"),
    ("cli-bench-hybrid-without-teacher", ["--modes", "hybrid", "--teacher", "none"], "mode 'hybrid' needs a teacher"),
    ("cli-bench-all-modes-without-teacher", ["--modes", "all"], "mode 'offline' needs a teacher"),
    ("cli-bench-task-with-data-dir", ["--task", "SciFact"], "--task SciFact and --data-dir"),
    ("cli-bench-output-png", ["--output", "{tmp}/run.png"], "must not end in .png"),
    ("cli-bench-output-png-upper", ["--output", "{tmp}/run.PNG"], "must not end in .png"),
    ("cli-bench-output-no-file-name", ["--output", "/"], "give a JSON file path"),
    ("cli-bench-data-dir-twice", ["--data-dir", "{dir}"], "same folder"),
    ("cli-bench-feedback-seeds-duplicate", ["--feedback", "train", "--seeds", "1,1"], "seed 1 is given twice"),
    ("cli-bench-feedback-task-with-data-dir", ["--feedback", "train", "--task", "SciFact"], "--task SciFact and --data-dir"),
]


@pytest.mark.parametrize("case,args,match", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_refuses_before_running(tmp_path, monkeypatch, capsys, case, args, match):  # case: cli-bench-values
    d = _folder(tmp_path / "c")
    args = [a.replace("{tmp}", str(tmp_path)).replace("{dir}", str(d)) for a in args]
    code, err = _cli(monkeypatch, capsys, tmp_path, "--data-dir", str(d), *args)
    assert code == 2 and match in err, (code, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not _cli.calls
    assert not (tmp_path / "run.png").exists() and not (tmp_path / "run.PNG").exists()


# -- 10. [benchmark] settings: task, data_dir, split, seeds --------------------------------------


def test_cli_reads_benchmark_settings_and_flags_override_them(tmp_path, monkeypatch, capsys):  # case: cli-bench-settings-ignored
    d, e = _folder(tmp_path / "fromconfig"), _folder(tmp_path / "fromflag")
    cfg = tmp_path / "bench.toml"
    cfg.write_text(f"[benchmark]\ndata_dir = {json.dumps(str(d))}\nsplit = 'dev'\nseeds = [1, 2]\ncycles = 2\n")
    code, err = _cli(monkeypatch, capsys, tmp_path, "--config", str(cfg))
    assert code == "ran", err
    kw = _cli.calls[0]
    assert (kw["task"], kw["data_dir"], kw["split"], kw["seeds"], kw["cycles"]) == (None, [str(d)], "dev", [1, 2], 2)
    code, err = _cli(monkeypatch, capsys, tmp_path, "--config", str(cfg), "--data-dir", str(e), "--split", "test", "--seeds", "3")
    kw = _cli.calls[0]
    assert (kw["task"], kw["data_dir"], kw["split"], kw["seeds"]) == (None, [str(e)], "test", [3])
    code, err = _cli(monkeypatch, capsys, tmp_path, "--config", str(cfg), "--feedback", "train")  # the feedback protocol reads them too
    kw = _cli.calls[0]
    assert (kw["task"], kw["data_dir"], kw["split"], kw["seeds"]) == (None, [str(d)], "dev", [1, 2])
    code, err = _cli(monkeypatch, capsys, tmp_path, env={"ANTIGRAVITY_BENCHMARK__DATA_DIR": str(e), "ANTIGRAVITY_BENCHMARK__SEEDS": "[4]"})
    kw = _cli.calls[0]
    assert (kw["task"], kw["data_dir"], kw["seeds"]) == (None, [str(e)], [4])


@pytest.mark.parametrize("toml,match", [
    ("[benchmark]\ntask = 'SciFact'\ndata_dir = '{dir}'\n", "benchmark.task = 'SciFact' and benchmark.data_dir"),
    ("[benchmark]\ndata_dir = '{dir}'\nseeds = [1, 1]\n", "benchmark.seeds: seed 1 is given twice"),
    ("[benchmark]\ndata_dir = '{dir}'\nseeds = [-2]\n", "benchmark.seeds: seed -2 must be an integer >= 0"),
    ("[benchmark]\ndata_dir = '{dir}'\nseeds = []\n", "benchmark.seeds is empty"),
    ("[benchmark]\ntask = 'NoSuchTask'\n", "unknown task 'NoSuchTask'"),
])
def test_cli_checks_benchmark_settings_like_flags(tmp_path, monkeypatch, capsys, toml, match):
    d = _folder(tmp_path / "c")
    cfg = tmp_path / "bench.toml"
    cfg.write_text(toml.replace("{dir}", str(d)))
    code, err = _cli(monkeypatch, capsys, tmp_path, "--config", str(cfg))
    assert code == 2 and match in err, (code, err)
    assert not _cli.calls


def test_cli_valid_run_unchanged(tmp_path, monkeypatch, capsys):
    """A valid run still runs (the checks refuse only what they name) and writes JSON + PNG."""
    d = _folder(tmp_path / "c")
    out = tmp_path / "r.json"
    code, err = _cli(monkeypatch, capsys, tmp_path, "--data-dir", str(d), "--seeds", "0,1", "--output", str(out), real=True)
    assert code == 0, err
    r = json.loads(out.read_text())
    assert r["seeds"] == [0, 1] and list(r["runs"]["none"]["corpora"]) == ["c"] and out.with_suffix(".png").stat().st_size > 0


def test_evaluation_queries_no_ranking_can_score_are_counted_in_the_protocol(tmp_path):
    """A judged query with no grade above 0, or whose every relevant document is empty (never
    returned by a search), scores 0 whatever the engine does: counted per seed (and summed over
    cross-fitted folds), kept in the means as pytrec_eval and BEIR keep them."""
    qrels = H + "".join(f"q{i}\td{i}\t1\n" for i in range(2, 12)) + "q0\td0\t0\nq1\td1\t1\n"
    d = _folder(tmp_path / "c", qrels=qrels)
    lines = (d / "corpus.jsonl").read_text().splitlines()
    lines[1] = json.dumps({"_id": "d1", "title": "", "text": ""})  # q1's only relevant document is empty
    (d / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    src = hb.load_source(None, str(d), "test")
    folds = [hb.split_for_seed(src, 0, fold=f) for f in (0, 1)]
    assert sum(f.protocol["n_eval_without_relevant"] for f in folds) == 1
    assert sum(f.protocol["n_eval_relevant_only_empty"] for f in folds) == 1
    clean = hb.split_for_seed(hb.load_source(None, str(_folder(tmp_path / "ok")), "test"), 0)
    assert clean.protocol["n_eval_without_relevant"] == clean.protocol["n_eval_relevant_only_empty"] == 0


# -- 11. every corpus's splits checked before the first corpus runs -----------------------------


@pytest.mark.parametrize("failing", [
    {"corpus": "b", "seed": 1, "fold": 0, "labels": "none", "cross_fit": False},  # a later corpus, a later seed
    {"corpus": "b", "seed": 0, "fold": 0, "labels": "dev", "cross_fit": False},  # a later label setting
    {"corpus": "b", "seed": 0, "fold": 1, "labels": "none", "cross_fit": True},  # a later (swapped) fold
], ids=["later-corpus-seed", "later-labels", "later-fold"])
def test_a_split_without_evaluation_query_on_a_later_corpus_is_refused_before_the_first_corpus_runs(tmp_path, monkeypatch, failing):  # case: bench-split-no-evaluation-query-any-corpus
    """Every corpus's splits (each label setting, seed and fold) are made and checked before any
    corpus is encoded: a split evaluating nothing on the last corpus must not come after the
    first corpus was benchmarked in full. (Today's split rule gives every split an evaluation
    query once the count checks pass, so the rule is replaced here by one that empties the
    failing split: the test pins the order of the check, not the rule.)"""
    real = hb.split_for_seed

    def split(src, seed, *, labels="none", fold=0, **kw):
        data = real(src, seed, labels=labels, fold=fold, **kw)
        if (src.name, seed, fold, labels) == (failing["corpus"], failing["seed"], failing["fold"], failing["labels"]):
            data.eval_queries.clear()
        return data

    ran = []
    monkeypatch.setattr(hb, "split_for_seed", split)
    monkeypatch.setattr(hb, "run_mode", lambda *a, **k: ran.append(a[0]) or pytest.fail("a mode ran before the refusal"))
    a, b = _folder(tmp_path / "a"), _folder(tmp_path / "b")
    enc = HashEncoder(32)
    match = rf"{b / 'qrels' / 'test.tsv'}: seed {failing['seed']}, fold {failing['fold']} leaves no evaluation query"
    with pytest.raises(DatasetError, match=match):
        _bench(_settings(tmp_path), [a, b], seeds=[0, 1], labels=["none", "dev"], cross_fit=failing["cross_fit"], encoder=enc)
    assert enc.calls == 0 and not ran


def test_splits_made_up_front_are_the_splits_run(tmp_path, monkeypatch):
    """The up-front splits are the ones benchmarked (made once per corpus, label setting, seed
    and fold, not again per corpus)."""
    made = []
    real = hb.split_for_seed
    monkeypatch.setattr(hb, "split_for_seed", lambda src, seed, **kw: made.append((src.name, seed, kw["labels"], kw["fold"])) or real(src, seed, **kw))
    r = _bench(_settings(tmp_path), [_folder(tmp_path / "a"), _folder(tmp_path / "b", n=8)], seeds=[0, 1], labels=["none", "dev"], cross_fit=True, encoder=HashEncoder(32))
    assert sorted(made) == sorted({(c, s, lb, f) for c in "ab" for s in (0, 1) for lb in ("none", "dev") for f in (0, 1)})
    assert r["runs"]["dev"]["corpora"]["b"]["folds"] == 2 and [p["seed"] for p in r["runs"]["none"]["corpora"]["a"]["protocol_per_seed"]] == [0, 0, 1, 1]


# -- 12. the served-version record (active.json): a version is an integer >= 0 ------------------


def _registry_with_version_1(tmp_path):
    from antigravity.adaptation.adapter import ResidualAdapter
    from antigravity.serving.checkpoints import AdapterRegistry

    reg = AdapterRegistry(tmp_path, "antigravity")
    reg.save(1, None, ResidualAdapter(32, 4), {"student": {"name": "hash-encoder", "dim": 32}})
    reg.set_active(1, "raw", [0, 1])
    return reg


ACTIVE_DAMAGE = [  # (case, edit of active.json's fields, what the message shows)
    ("version-true", {"version": True}, "'version' is true"),
    ("version-false", {"version": False, "history": [0]}, "'version' is false"),
    ("version-float", {"version": 1.0}, "'version' is 1.0"),
    ("version-fraction", {"version": 1.5}, "'version' is 1.5"),
    ("version-string", {"version": "1"}, "'version' is \"1\""),
    ("version-negative", {"version": -1, "history": [0, -1]}, "'version' is -1"),
    ("version-null", {"version": None}, "'version' is null"),
    ("version-missing", {"version": ...}, "field 'version' is missing"),
    ("history-entry-true", {"history": [0, True]}, "'history' is [0, true]"),
    ("history-string", {"history": "01"}, "'history' is \"01\""),
    ("history-not-ending-with-version", {"history": [0, 1, 2]}, "'history' [0, 1, 2] does not end with the served 'version' 1"),
    ("history-empty", {"history": []}, "'history' [] does not end"),
    ("slot-not-a-string", {"slot": 5}, "'slot' is 5"),
    ("not-an-object", [1], "[1] is not an object"),
]


@pytest.mark.parametrize("case,edit,shown", ACTIVE_DAMAGE, ids=[c[0] for c in ACTIVE_DAMAGE])
def test_active_version_record_with_a_wrong_typed_field_is_a_checkpoint_error(tmp_path, case, edit, shown):  # case: store-active-version-wrong-type
    """``active.json`` names the served version: ``true``, ``1.0`` or ``"1"`` used to be read as
    version 1 (``int()``), ``1.5`` as 1 and a history ``"01"`` as [0, 1]; each is now damage,
    refused with a CheckpointError naming the file and the value as the file has it."""
    from antigravity.core.errors import CheckpointError

    reg = _registry_with_version_1(tmp_path)
    data = json.loads(reg.active_path.read_text())
    if isinstance(edit, dict):
        for k, v in edit.items():
            data.pop(k) if v is ... else data.__setitem__(k, v)
    else:
        data = edit
    reg.active_path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=re.escape(str(reg.active_path)) + r" is malformed: .*" + re.escape(shown)):
        reg.active()
    with pytest.raises(CheckpointError, match=re.escape(shown)):
        reg.list()  # `antigravity adapters list` reads it too


def test_active_version_record_as_written_still_reads(tmp_path):
    reg = _registry_with_version_1(tmp_path)
    assert reg.active() == {"version": 1, "slot": "raw", "history": [0, 1]}
    reg.set_active(0, "raw", [1, 0])
    assert reg.active() == {"version": 0, "slot": "raw", "history": [1, 0]}
    reg.active_path.unlink()
    assert reg.active() == {"version": 0, "slot": "raw", "history": [0]}


@pytest.mark.parametrize("value", [True, 1.0])
def test_checkpoint_metadata_version_true_is_not_version_1(tmp_path, value):  # case: store-active-version-wrong-type
    from antigravity.core.errors import CheckpointError

    reg = _registry_with_version_1(tmp_path)
    meta = json.loads(reg.meta_path(1).read_text())
    reg.meta_path(1).write_text(json.dumps(meta | {"version": value}))
    with pytest.raises(CheckpointError, match=rf"v000001\.json is malformed \(version field {json.dumps(value)}, expected 1\)"):
        reg.read_meta(1)


def test_engine_open_refuses_active_version_true(tmp_path):  # case: store-active-version-wrong-type
    """End to end: a persistent engine whose ``active.json`` says ``"version": true`` is refused at
    open (it used to serve adapter version 1), and the refused open changes no file."""
    from antigravity import AntigravityEngine
    from antigravity.adaptation.adapter import ResidualAdapter
    from antigravity.core.errors import CheckpointError
    from antigravity.serving.checkpoints import AdapterRegistry

    def engine():
        return AntigravityEngine(data_dir=str(tmp_path), store__location=str(tmp_path / "qdrant"), encoder=HashEncoder(32), teacher__name="none")

    e = engine()
    e.ingest([{"_id": f"d{i}", "text": f"document {i} word{i}"} for i in range(20)])
    e.close()
    reg = AdapterRegistry(tmp_path, "antigravity")
    reg.save(1, None, ResidualAdapter(32, 4), {"student": {"name": "hash-encoder", "dim": 32}})
    reg.active_path.write_text(json.dumps({"version": True, "slot": "raw", "history": [0, True]}))
    before = {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    with pytest.raises(CheckpointError, match=r"active\.json is malformed: 'version' is true"):
        engine()
    assert {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()} == before


# -- 13. the feedback benchmark's seeds: checked as run_benchmark's -----------------------------


@pytest.mark.parametrize("seeds,match", [([0, 0], "seed 0 is given twice"), ([1, 2, 1], "seed 1 is given twice"), ([-1], "seed -1 must be an integer >= 0"),
                                         ([True], "seed True must be an integer >= 0"), ([], "empty")])
def test_feedback_api_seeds_are_checked_like_the_benchmark(tmp_path, seeds, match):  # case: bench-feedback-seeds-repeated
    """``run_feedback_benchmark(seeds=[0, 0])`` ran seed 0 twice: its gate decision counted twice
    and its spread was 0. Refused like ``run_benchmark`` (one :func:`validate_seeds`), before any work."""
    d = _folder(tmp_path / "c")
    for run in (_bench, _feedback):
        enc = HashEncoder(32)
        with pytest.raises(ConfigurationError, match=match):
            run(_settings(tmp_path), [d], seeds=seeds, encoder=enc)
        assert enc.calls == 0


# -- 14. benchmarks/compare_results.py and compare_runs.py: nothing compared short ---------------


def _script(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def _stored_result():
    def row(cycle, d):
        return {"cycle": cycle, "ndcg@10": 0.5 + d, "strata": {"no_near_dup": {"delta_per_seed": {"0": d, "1": d / 2}}},
                "per_query_ndcg@10": {"0": {"q1": 0.5, "q2": 0.25 + d}, "1": {"q1": 0.75, "q3": 0.5}}}

    mode = {"pretrained": row("pretrained", 0.05), "cycles": [row(0, 0.0), row(1, 0.01), row(2, 0.02)], "decisions": [{"promoted": True}]}
    return {"runs": {"none": {"corpora": {"cacm": {"modes": {"offline": mode}}}}}}


def _edit(result, path, value):
    node = result
    for k in path[:-1]:
        node = node[k]
    if value is ...:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return result


MODE = ("runs", "none", "corpora", "cacm", "modes", "offline")
COMPARE_RESULTS_DAMAGE = [  # (case, edit of the re-run, a mismatch line that must appear)
    ("rerun-missing-last-cycle", lambda r: r["runs"]["none"]["corpora"]["cacm"]["modes"]["offline"]["cycles"].pop(), "offline 2: missing in the second result"),
    ("rerun-missing-pretrained", lambda r: _edit(r, (*MODE, "pretrained"), None), "offline pretrained: missing in the second result"),
    ("rerun-delta-nan", lambda r: _edit(r, (*MODE, "cycles", 1, "strata", "no_near_dup", "delta_per_seed", "0"), float("nan")), "offline 1 no_near_dup seed 0: +0.010000 vs nan"),
]


@pytest.mark.parametrize("case,edit,line", COMPARE_RESULTS_DAMAGE, ids=[c[0] for c in COMPARE_RESULTS_DAMAGE])
def test_compare_results_pairs_rows_by_name_and_never_matches_a_nan(case, edit, line):  # case: bench-compare-short-or-nan
    """compare_results.py paired rows by position (``zip``): a re-run with a cycle fewer was
    compared short and reported 0 mismatches, one without the pre-trained row was compared
    shifted; a NaN difference is not ``> atol``, so a NaN per-seed Δ counted as reproduced."""
    cmp = _script("compare_results")
    rerun = _stored_result()
    edit(rerun)
    n, worst, bad = cmp.compare(_stored_result(), rerun)
    assert any(x.endswith(line) for x in bad), bad
    assert worst == float("inf") or case.startswith("rerun-missing")
    both_nan = _edit(_stored_result(), (*MODE, "cycles", 0, "strata", "no_near_dup", "delta_per_seed", "1"), float("nan"))
    assert cmp.compare(both_nan, copy.deepcopy(both_nan))[2] != []  # a NaN is not a reproduced number
    assert cmp.compare(_stored_result(), _stored_result())[2] == []


COMPARE_RUNS_DAMAGE = [  # (case, edit of the second result)
    ("extra-query", lambda r: _edit(r, (*MODE, "cycles", 0, "per_query_ndcg@10", "0", "q9"), 0.5)),
    ("missing-query", lambda r: _edit(r, (*MODE, "cycles", 0, "per_query_ndcg@10", "1", "q3"), ...)),
    ("extra-seed", lambda r: _edit(r, (*MODE, "cycles", 0, "per_query_ndcg@10", "2"), {"q1": 0.5})),
    ("ndcg-nan", lambda r: _edit(r, (*MODE, "cycles", 2, "ndcg@10"), float("nan"))),
    ("per-query-nan", lambda r: _edit(r, (*MODE, "cycles", 2, "per_query_ndcg@10", "0", "q1"), float("nan"))),
]


@pytest.mark.parametrize("case,edit", COMPARE_RUNS_DAMAGE, ids=[c[0] for c in COMPARE_RUNS_DAMAGE])
def test_compare_runs_reports_every_query_seed_or_nan_it_cannot_match(tmp_path, capsys, case, edit):  # case: bench-compare-short-or-nan
    """compare_runs.py compared only the first result's queries (a query or seed only in the
    second was ignored, one missing from it a KeyError) and a NaN score matched anything: each is
    now an infinite difference, exit 1; equal results still print 0 and exit 0."""
    runs = _script("compare_runs")
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_stored_result()))
    b.write_text(json.dumps(_stored_result()))
    assert runs.main(str(a), str(b)) == 0 and capsys.readouterr().out.endswith("largest difference: 0.00e+00\n")
    second = _stored_result()
    edit(second)
    b.write_text(json.dumps(second))
    assert runs.main(str(a), str(b)) == 1
    assert capsys.readouterr().out.endswith("largest difference: inf\n")
