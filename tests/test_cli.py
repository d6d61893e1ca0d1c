import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from antigravity.cli import app

runner = CliRunner()


def _run(*args, env=None):
    """Run the real console entry point in a subprocess (exit codes, stderr one-liners)."""
    return subprocess.run(
        [sys.executable, "-c", "from antigravity.cli import main; main()", *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600,
    )


@pytest.mark.parametrize(
    "args,match",
    [
        (["benchmark", "--modes", "bogus"], "unknown mode"),
        (["benchmark", "--seeds", "a,b"], "--seeds must be comma-separated integers"),
        (["benchmark", "--task", "NoSuchTask"], "unknown task 'NoSuchTask'"),
        (["benchmark", "--data-dir", "/no/such/dir"], "does not exist"),
        (["benchmark", "--cycles", "-1"], "--cycles must be >= 0"),
        (["benchmark", "--student", "no-such-model", "--data-dir", "{toy}"], "unknown model 'no-such-model'"),
    ],
)
def test_cli_errors_are_one_line(args, match, toy_beir):
    args = [a.replace("{toy}", str(toy_beir)) for a in args]
    res = _run(*args)
    assert res.returncode == 2, res.stderr
    assert match in res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_debug_shows_traceback():
    res = _run("--debug", "benchmark", "--modes", "bogus")
    assert res.returncode != 0 and "Traceback" in res.stderr


@pytest.mark.models
def test_benchmark_on_toy_beir_writes_json(toy_beir, tmp_path):
    out = tmp_path / "r.json"
    res = runner.invoke(app, ["benchmark", "--data-dir", str(toy_beir), "--output", str(out), "--cache-dir", str(tmp_path / "c"), "--seeds", "0,1"])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    for key in ("student", "teacher", "seeds", "runs", "headline_stratum"):
        assert key in r
    corpus = r["runs"]["none"]["corpora"]["toy"]
    # the toy folder has train qrels: adaptation = the TRAIN texts, evaluation = the 3 test queries
    assert corpus["n_docs"] == 5 and corpus["n_queries_eval"] == 3 and r["seeds"] == [0, 1] and corpus["split_kind"] == "train"
    c0 = corpus["modes"]["baseline"]["cycles"][0]
    for key in ("cycle", "ndcg@10", "recall@100", "mrr@10", "query_time_s", "sediment_time_s", "std", "per_seed", "strata", "per_query_ndcg@10"):
        assert key in c0
    assert c0["cycle"] == 0 and 0.0 <= c0["ndcg@10"] <= 1.0
    assert set(c0["per_query_ndcg@10"]["0"]) == {"q1", "q2", "q3"}
    assert out.with_suffix(".png").stat().st_size > 0
    # the toy queries are near-copies of their documents: the student should find them
    assert c0["ndcg@10"] > 0.9


@pytest.mark.models
def test_index_and_search_commands(toy_beir, tmp_path):
    data = tmp_path / "engine"
    res = _run("index", str(toy_beir / "corpus.jsonl"), "--data-dir", str(data))
    assert res.returncode == 0, res.stderr
    res = _run("search", "does aspirin help with fever", "--data-dir", str(data), "--json", "-k", "2")
    assert res.returncode == 0, res.stderr
    hits = [json.loads(line) for line in res.stdout.strip().splitlines()]
    assert hits[0]["doc_id"] in ("d1", "d4") and len(hits) == 2


@pytest.mark.parametrize("items,want", [
    (["code=003"], {"code": 3}),
    (['code="003"'], {"code": "003"}),
    (["code='true'"], {"code": "true"}),
    (['tag="003",7'], {"tag": ["003", 7]}),  # each value of a list typed alone
    (["year>=2010", "year<2020", "lang=en"], {"year": {"gte": 2010, "lt": 2020}, "lang": "en"}),
])
def test_filter_values_are_typed_and_quotes_keep_a_string(items, want):
    from antigravity.cli import _parse_filters

    assert _parse_filters(items) == want
