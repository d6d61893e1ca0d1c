"""The engine as an mteb search model (``antigravity.harness.mteb_search``).

Fast tests use the ``HashEncoder`` stub on a small generated BEIR folder; the slow one checks
mteb's NDCG@10 for the frozen all-MiniLM-L6-v2 engine on the shipped SciFact against
``antigravity benchmark``'s.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

mteb = pytest.importorskip("mteb")

from antigravity import AntigravityEngine  # noqa: E402
from antigravity.adaptation.adapter import ResidualAdapter  # noqa: E402
from antigravity.harness.benchmark import run_for  # noqa: E402
from antigravity.datasets import doc_text, load_beir  # noqa: E402
from antigravity.core.errors import ConfigurationError, QueryError  # noqa: E402
from antigravity.evaluation import evaluate  # noqa: E402
from antigravity.harness.mteb_search import AntigravitySearchModel, beir_task, ndcg_at_10  # noqa: E402

from tests.conftest import HashEncoder  # noqa: E402

WORDS = (
    "aspirin fever pain cat dog sleep vaccine immune virus heart lung kidney liver brain cell "
    "protein gene tumor insulin diabetes blood pressure sugar salt exercise diet coffee tea "
    "memory stress sleep infant elderly mouse trial dose"
).split()


def _write_beir(root, n_docs=40, n_queries=12, seed=0, with_empty=False):
    """A deterministic BEIR folder: documents are random word bags (with titles), each query
    is a few words of its gold document plus noise words; queries carry ``metadata`` with a
    wrong "answer" that must never be read."""
    rng = np.random.default_rng(seed)
    (root / "qrels").mkdir(parents=True)
    docs = []
    for i in range(n_docs):
        words = list(rng.choice(WORDS, size=8))
        docs.append({"_id": f"d{i}", "title": " ".join(words[:2]), "text": " ".join(words[2:])})
    if with_empty:
        docs.append({"_id": "empty", "title": "", "text": "  "})
    queries, qrels = [], []
    for j in range(n_queries):
        gold = docs[int(rng.integers(n_docs))]
        words = (gold["title"] + " " + gold["text"]).split()
        q = list(rng.choice(words, size=3)) + list(rng.choice(WORDS, size=2))
        queries.append({"_id": f"q{j}", "text": " ".join(q), "metadata": {"d0": [{"label": "SUPPORT"}]}})
        qrels.append((f"q{j}", gold["_id"], 1))
        if j % 3 == 0:  # a second, graded judgment
            qrels.append((f"q{j}", docs[(int(gold["_id"][1:]) + 1) % n_docs]["_id"], 2))
    with open(root / "corpus.jsonl", "w") as fh:
        fh.writelines(json.dumps(d) + "\n" for d in docs)
    with open(root / "queries.jsonl", "w") as fh:
        fh.writelines(json.dumps(q) + "\n" for q in queries)
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels))
    return root


def _mteb_eval(model, task):
    return mteb.evaluate(model, task, cache=None, co2_tracker=False, show_progress_bar=False)


def _our_ndcg(engine, folder):
    """``antigravity.evaluation.evaluate`` on the engine's own run (the benchmark's ``run_for``)."""
    ds = load_beir(folder, splits=("test",))
    queries = ds.split_queries("test")
    qvecs = engine.encoder.encode(list(queries.values()))
    return evaluate(ds.qrels["test"], run_for(engine, queries, qvecs, k=100))["ndcg@10"]


def _random_adapter(dim, seed, scale=1.5):
    ad = ResidualAdapter(dim, dim)
    w = np.random.default_rng(seed).normal(0.0, scale / np.sqrt(dim), size=(dim, dim)).astype(np.float32)
    with torch.no_grad():
        ad.full.weight.copy_(torch.from_numpy(w))
    return ad


@pytest.fixture
def beir_dir(tmp_path):
    return _write_beir(tmp_path / "gen")


@pytest.fixture
def loaded_engine(tmp_path, beir_dir):
    eng = AntigravityEngine(data_dir=str(tmp_path), store__location=":memory:", encoder=HashEncoder())
    ds = load_beir(beir_dir, splits=("test",))
    eng.ingest([{"_id": d, **v} for d, v in ds.corpus.items()])
    yield eng
    eng.close()


def test_is_an_mteb_search_model_with_offline_meta(loaded_engine):
    model = AntigravitySearchModel(loaded_engine)
    assert isinstance(model, mteb.models.SearchProtocol)
    meta = model.mteb_model_meta
    assert meta.name == "antigravity/hash-encoder" and meta.embed_dim == 64
    assert meta.revision.startswith("v0-")


def test_mteb_scores_the_served_engine_frozen_then_adapted(loaded_engine, beir_dir):
    task = beir_task(beir_dir)
    model = AntigravitySearchModel(loaded_engine)
    frozen_rev = model.mteb_model_meta.revision

    frozen_mteb = ndcg_at_10(_mteb_eval(model, task))
    frozen_ours = _our_ndcg(loaded_engine, beir_dir)
    assert 0.0 < frozen_mteb < 1.0
    assert frozen_mteb == pytest.approx(frozen_ours, abs=1e-4)  # mteb rounds to 5 decimals

    dim = loaded_engine.encoder.dim
    loaded_engine.activate(_random_adapter(dim, 1), _random_adapter(dim, 2), version=1)
    adapted_mteb = ndcg_at_10(_mteb_eval(model, task))
    adapted_ours = _our_ndcg(loaded_engine, beir_dir)
    assert adapted_mteb == pytest.approx(adapted_ours, abs=1e-4)
    assert abs(adapted_mteb - frozen_mteb) > 1e-3  # mteb sees the adapter, not the frozen student
    # the cache identity follows the served adapter
    assert model.mteb_model_meta.revision.startswith("v1-") and model.mteb_model_meta.revision != frozen_rev
    # evaluation never feeds adaptation
    stats = loaded_engine.stats()
    assert stats["queries_served"] >= 4 * 12  # two mteb runs and two of ours, 12 queries each
    assert stats.get("signals_recorded", 0) == 0 and stats["traffic_buffered"] == 0


def test_default_model_builds_a_fresh_in_memory_engine_per_index(tmp_path, beir_dir, loaded_engine):
    task = beir_task(beir_dir)
    with AntigravitySearchModel(encoder=HashEncoder(), data_dir=str(tmp_path / "state")) as model:
        score = ndcg_at_10(_mteb_eval(model, task))
        first = model.engine
        assert first.settings.store.location == ":memory:" and first.served_version.version == 0
        assert score == pytest.approx(_our_ndcg(loaded_engine, beir_dir), abs=1e-4)
        other = _write_beir(tmp_path / "other", n_docs=7, n_queries=3, seed=5)
        ndcg_at_10(_mteb_eval(model, beir_task(other)))
        assert model.engine is not first and model.engine.count() == 7  # nothing left from the first corpus
    assert model.engine is None
    assert not (tmp_path / "state" / "qdrant").exists()  # nothing written to disk


def test_index_embeds_title_plus_text_and_skips_empty_documents(tmp_path):
    folder = _write_beir(tmp_path / "e", n_docs=10, n_queries=3, with_empty=True)
    task = beir_task(folder)
    corpus = task.dataset["default"]["test"]["corpus"]
    model = AntigravitySearchModel(encoder=HashEncoder(), data_dir=str(tmp_path))
    model.index(corpus)
    assert model.skipped_documents == ["empty"] and model.engine.count() == 10
    ids, raw = model.engine.raw_matrix()
    ds = load_beir(folder, splits=("test",))
    expected = HashEncoder().encode([doc_text(ds.corpus[d]) for d in ids])
    np.testing.assert_allclose(raw, expected, atol=1e-6)
    assert model.engine.document_fields("d3") == ds.corpus["d3"]  # title and text kept apart in the payload
    model.close()


def test_beir_task_never_reads_query_metadata(beir_dir):
    task = beir_task(beir_dir, name="MyData")
    split = task.dataset["default"]["test"]
    assert task.metadata.name == "MyData" and task.metadata.main_score == "ndcg_at_10"
    assert sorted(split["queries"].column_names) == ["id", "text"]
    assert len(split["queries"]) == 12 and split["relevant_docs"]["q0"]  # judged queries only
    assert beir_task(beir_dir).metadata.dataset["revision"] == task.metadata.dataset["revision"]


def test_given_engine_with_foreign_documents_is_refused(loaded_engine, tmp_path):
    other = _write_beir(tmp_path / "small", n_docs=5, n_queries=2, seed=3)
    corpus = beir_task(other).dataset["default"]["test"]["corpus"]
    with pytest.raises(ConfigurationError, match="holds 4"):
        AntigravitySearchModel(loaded_engine).index(corpus)


def test_search_arguments(loaded_engine, beir_dir):
    from datasets import Dataset

    model = AntigravitySearchModel(loaded_engine)
    with pytest.raises(ConfigurationError):
        AntigravitySearchModel(loaded_engine, data_dir="x")
    with pytest.raises(ConfigurationError, match="index"):
        AntigravitySearchModel(encoder=HashEncoder()).search(Dataset.from_list([{"id": "q", "text": "cat"}]), top_k=5)
    with pytest.raises(QueryError, match="'q2'"):
        model.search(Dataset.from_list([{"id": "q1", "text": "cat"}, {"id": "q2", "text": " "}]), top_k=5)
    qs = Dataset.from_list([{"id": "q1", "text": "aspirin fever cat"}, {"id": "q2", "text": "heart lung"}])
    res = model.search(qs, top_k=5)
    assert set(res) == {"q1", "q2"} and all(len(v) == 5 for v in res.values())
    reranked = model.search(qs, top_k=5, top_ranked={"q1": ["d3", "d7", "nope"], "q2": ["d1"]})
    assert set(reranked["q1"]) == {"d3", "d7"} and set(reranked["q2"]) == {"d1"}


def test_mteb_is_optional_and_nothing_imports_this_module():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = "import sys, antigravity.harness.mteb_search, antigravity.cli, antigravity.harness.benchmark; print('mteb' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"  # mteb is imported only when a task or a model meta is built
    users = [p.name for p in (root / "antigravity").glob("*.py") if p.name != "mteb_search.py" and "mteb_search" in p.read_text()]
    assert users == []


# -- full SciFact --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.models
def test_scifact_frozen_engine_mteb_equals_benchmark():
    """mteb's NDCG@10 for the frozen all-MiniLM-L6-v2 engine on the shipped SciFact test split
    equals ``antigravity benchmark``'s. Both go through the engine's Encoder and its embedding
    cache under ~/.antigravity/cache, so only the first run encodes the corpus."""
    from antigravity.harness.benchmark import run_benchmark
    from antigravity.settings import Settings

    s = Settings.load(student__name="all-MiniLM-L6-v2")
    t0 = time.perf_counter()
    bench = run_benchmark(s, task="SciFact", data_dir=None, split="test", modes=["baseline"], seeds=[0], cycles=0)
    t1 = time.perf_counter()
    corpus = bench["runs"]["none"]["corpora"]["SciFact"]
    ours = corpus["modes"]["baseline"]["cycles"][0]["ndcg@10"]
    with AntigravitySearchModel(settings=s) as model:
        res = _mteb_eval(model, beir_task(task="SciFact"))
    t2 = time.perf_counter()
    theirs = ndcg_at_10(res)
    print(f"\nSciFact test NDCG@10: antigravity benchmark {ours:.6f} ({t1 - t0:.1f} s), mteb {theirs:.5f} ({t2 - t1:.1f} s)")
    assert corpus["n_queries_eval"] == 300 and len(res.task_results[0].scores["test"]) == 1
    assert abs(theirs - ours) <= 1e-4
    assert abs(ours - 0.6451) <= 0.003  # the published value for this student
