"""The label-free gate's judged texts are topped up with corpus pseudo-queries (``gate.min_judged_texts``):
below the threshold only, judged only (never trained on), seeded, never an evaluation text,
and 0 restores judging held-out traffic alone — with the HashEncoder stub."""

import json

import numpy as np
import pytest

from antigravity import AntigravityEngine
from antigravity.adaptation import distillation as distillation_mod
from antigravity.adaptation import sedimentation as sedimentation_mod
from antigravity.adaptation.gates import JudgeGate, is_held_out, is_stopping_half, judged_pseudo_texts, split_held_out, text_digest
from antigravity.harness.benchmark import normalise, run_benchmark, split_for_seed, load_source
from antigravity.settings import Settings
from tests.conftest import HashEncoder

WORDS = "fever aspirin pain cat dog sleep walk vaccine immune virus heart blood cell gene tumor drug dose trial brain memory".split()


def _sentence(rng) -> str:
    words = list(rng.choice(WORDS, size=9))
    return words[0].capitalize() + " " + " ".join(words[1:]) + f" s{rng.integers(10**6)}."


def _docs(n=150, seed=0):
    rng = np.random.default_rng(seed)
    return [{"_id": f"d{i}", "title": "", "text": " ".join(_sentence(rng) for _ in range(4))} for i in range(n)]


def _engine(tmp_path, **kw):
    e = AntigravityEngine(data_dir=str(tmp_path), store__location=":memory:", encoder=HashEncoder(32), adaptation__rank=8, adaptation__epochs=3, **kw)
    e.ingest(_docs())
    return e


def _traffic(e, n=200, seed=1):
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, size=3)) + f" t{i}" for i in range(n)]
    e.search_batch(texts)
    return texts


@pytest.fixture
def built(monkeypatch):
    """Every JudgeGate.build call: the texts handed to the judge."""
    calls = []
    orig = JudgeGate.build.__func__

    def spy(cls, judge, texts, vectors, doc_ids, **kwargs):
        calls.append({"texts": list(texts), "vectors": np.asarray(vectors), "judged_texts": kwargs.get("judged_texts")})
        return orig(cls, judge, texts, vectors, doc_ids, **kwargs)

    monkeypatch.setattr(JudgeGate, "build", classmethod(spy))
    return calls


def test_cycle_tops_up_below_the_threshold_and_not_above(tmp_path, built):
    e = _engine(tmp_path, gate__min_judged_texts=120)
    texts = _traffic(e)
    held = [texts[i] for i in split_held_out(texts, 0.2)[1]]
    assert 20 <= len(held) < 120
    rep = e.run_sedimentation_cycle()
    jt = rep.extra["gate_metrics"]["judged_texts"]
    assert jt["traffic"] == len(held) and 0 < jt["pseudo"] <= 120 - len(held)
    assert built[-1]["texts"][: len(held)] == held and len(built[-1]["texts"]) == len(held) + jt["pseudo"]
    pseudo = built[-1]["texts"][len(held):]
    assert all(is_held_out(t, 0.2) for t in pseudo)  # a judged pseudo-query is held out of every cycle's training
    np.testing.assert_allclose(built[-1]["vectors"][len(held):], HashEncoder(32).encode(pseudo), atol=1e-6)
    e.close()

    e = _engine(tmp_path / "above", gate__min_judged_texts=len(held))  # enough held-out traffic: no top-up
    _traffic(e)
    rep = e.run_sedimentation_cycle()
    assert rep.extra["gate_metrics"]["judged_texts"] == {"traffic": len(held), "pseudo": 0}
    assert built[-1]["texts"] == held
    e.close()


def test_setting_zero_judges_held_out_traffic_exactly_as_before(tmp_path, built):
    reports = []
    for name, kw in (("off", {"gate__min_judged_texts": 0}), ("on", {"gate__min_judged_texts": 150})):
        e = _engine(tmp_path / name, **kw)
        texts = _traffic(e)
        reports.append(e.run_sedimentation_cycle())
        e.close()
    held = [texts[i] for i in split_held_out(texts, 0.2)[1]]
    off, on = reports
    assert built[0]["texts"] == held and built[0]["judged_texts"] == {"traffic": len(held), "pseudo": 0}
    assert off.extra["gate_metrics"]["n"] <= len(held) < on.extra["gate_metrics"]["n"]
    # the candidate is trained identically either way: only the judging differs
    X = np.random.default_rng(0).standard_normal((5, 32)).astype(np.float32)
    for a, b in zip(off.candidate, on.candidate):
        if a is not None:
            np.testing.assert_array_equal(a.transform(X), b.transform(X))


def test_pseudo_texts_never_reach_cycle_training(tmp_path, built, monkeypatch):
    seen = {}
    orig = sedimentation_mod.get_signal

    def spy_signal(name):
        sig = orig(name)
        inner = sig.targets

        def targets(traffic, seed):
            seen["texts"] = list(traffic.texts)
            seen["n"] = len(traffic.raw_queries)
            return inner(traffic, seed)

        sig.targets = targets
        return sig

    monkeypatch.setattr(sedimentation_mod, "get_signal", spy_signal)
    e = _engine(tmp_path, gate__min_judged_texts=150)
    texts = _traffic(e)
    rep = e.run_sedimentation_cycle()
    pseudo = built[-1]["texts"][rep.extra["gate_metrics"]["judged_texts"]["traffic"]:]
    assert pseudo and not set(pseudo) & set(seen["texts"])
    assert set(seen["texts"]) <= set(texts) and seen["n"] == len(seen["texts"])
    e.close()


class _Teacher:
    name, dim = "t", 32

    def encode(self, texts):
        return HashEncoder(32, name="t").encode(list(texts))

    def release(self):
        pass


def test_offline_distillation_tops_up_both_halves_and_never_trains_on_pseudo(tmp_path, built, monkeypatch):
    from antigravity.adaptation.distillation import DistillationConfig

    trained = {}
    orig = distillation_mod.train_ranking_distillation

    def spy(doc_ids, Sq, D, Tq, Td, cfg, emit, **kw):
        trained["Sq"] = np.asarray(Sq)
        return orig(doc_ids, Sq, D, Tq, Td, cfg, emit, **kw)

    monkeypatch.setattr(distillation_mod, "train_ranking_distillation", spy)
    e = _engine(tmp_path, teacher__name="none", gate__min_judged_texts=60)
    rng = np.random.default_rng(3)
    texts = [" ".join(rng.choice(WORDS, size=4)) + f" q{i}" for i in range(100)]
    rep = e.run_offline_distillation(texts, teacher=_Teacher(), config=DistillationConfig(rank=8, epochs=3, patience=2))
    jt = rep.metrics["judged_texts"]
    held = [t for t in texts if is_held_out(t, 0.2)]
    assert jt["gate"]["traffic"] == sum(not is_stopping_half(t) for t in held) and jt["stopping"]["traffic"] == sum(is_stopping_half(t) for t in held)
    assert jt["gate"]["traffic"] + jt["gate"]["pseudo"] == 60 and jt["stopping"]["traffic"] + jt["stopping"]["pseudo"] == 60
    assert rep.metrics["gate_metrics"]["judged_texts"] == jt["gate"]
    stop_call, gate_call = built[-2], built[-1]
    stop_pseudo = stop_call["texts"][jt["stopping"]["traffic"]:]
    gate_pseudo = gate_call["texts"][jt["gate"]["traffic"]:]
    assert all(is_stopping_half(t) for t in stop_pseudo) and not any(is_stopping_half(t) for t in gate_pseudo)
    assert not set(stop_pseudo) & set(gate_pseudo)
    assert trained["Sq"].shape[0] == rep.metrics["n_texts"]  # the trainer saw the distillation texts only
    pv = HashEncoder(32).encode(stop_pseudo + gate_pseudo)
    assert not np.any(np.isclose(trained["Sq"] @ pv.T, 1.0, atol=1e-5))  # no pseudo-query among the trained rows
    e.close()


def test_pseudo_texts_are_deterministic_per_seed_and_respect_exclusions():
    fields = {d["_id"]: {"title": d["title"], "text": d["text"]} for d in _docs()}
    a = judged_pseudo_texts(fields, [], [], 50, 0.2, seed=0)
    assert a == judged_pseudo_texts(fields, [], [], 50, 0.2, seed=0) and len(a) == 50
    assert a != judged_pseudo_texts(fields, [], [], 50, 0.2, seed=1)
    assert judged_pseudo_texts(fields, ["x"] * 50, [], 50, 0.2, seed=0) == []  # enough already
    assert len(judged_pseudo_texts(fields, ["x"] * 10, [], 50, 0.2, seed=0)) == 40
    excl = frozenset(text_digest("  " + t.upper() + " ") for t in a[:10])  # normalised match
    b = judged_pseudo_texts(fields, [], [], 50, 0.2, seed=0, excluded=excl)
    assert not set(a[:10]) & set(b) and len(b) == 50
    c = judged_pseudo_texts(fields, [], [a[0], a[1] + " extra"], 50, 0.2, seed=0)  # a trained text or a near-duplicate of one
    assert a[0] not in c and a[1] not in c


def _sentence_beir(tmp_path):
    """A BEIR folder whose queries are exact sentences of the documents (the gate's pseudo-query pool)."""
    rng = np.random.default_rng(5)
    docs = _docs(80, seed=5)
    d = tmp_path / "sentences"
    (d / "qrels").mkdir(parents=True)
    with open(d / "corpus.jsonl", "w") as fh:
        for doc in docs:
            fh.write(json.dumps(doc) + "\n")
    queries = []
    for i in range(60):
        doc = docs[i]
        queries.append({"_id": f"q{i}", "text": doc["text"].split(". ")[int(rng.integers(1, 3))].rstrip(".") + ".", "gold": doc["_id"]})
    with open(d / "queries.jsonl", "w") as fh:
        for q in queries:
            fh.write(json.dumps({"_id": q["_id"], "text": q["text"]}) + "\n")
    (d / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q['_id']}\t{q['gold']}\t1\n" for q in queries))
    return d


def test_benchmark_gate_never_judges_an_evaluation_text(tmp_path, built):
    d = _sentence_beir(tmp_path)
    s = Settings.load(data_dir=str(tmp_path / "state"), adaptation__rank=8, adaptation__epochs=2, teacher__name="none", gate__min_judged_texts=100000)
    run_benchmark(s, task=None, data_dir=[str(d)], split="test", modes=["baseline"], seeds=[0], cycles=1, labels=["none"], pseudo_queries=0, encoder=HashEncoder(32))
    data = split_for_seed(load_source(None, str(d), "test"), 0, labels="none")
    evals = {normalise(t) for t in data.eval_queries.values()}
    assert any(is_held_out(t, 0.2) for t in data.eval_queries.values())  # without the exclusion some would be judged
    judged = [t for call in built for t in call["texts"]]
    assert judged and not evals & {normalise(t) for t in judged}


def test_pseudo_pool_reads_a_bounded_seeded_sample_of_a_large_corpus(monkeypatch):
    """Above ``PSEUDO_POOL_DOCS_PER_TEXT × min_judged_texts`` documents only a seeded sample is read."""
    from types import SimpleNamespace

    from antigravity.adaptation import gates

    read: list[str] = []

    def fields(d):
        read.append(d)
        return {"title": f"title of document number {d} about topic", "text": ""}

    monkeypatch.setattr(gates, "PSEUDO_POOL_DOCS_PER_TEXT", 2)
    ctx = SimpleNamespace(settings=SimpleNamespace(gate=SimpleNamespace(min_judged_texts=10, holdout_fraction=0.2)), doc_ids=[f"d{i}" for i in range(100)],
                          document_fields=fields, excluded=frozenset())
    gates.top_up_judged(ctx, [], [], seed=3)
    first = list(read)
    assert len(first) == 20 and len(set(first)) == 20
    read.clear()
    gates.top_up_judged(ctx, [], [], seed=3)
    assert read == first  # the same sample for the same seed
    read.clear()
    ctx.doc_ids = ctx.doc_ids[:15]
    gates.top_up_judged(ctx, [], [], seed=3)
    assert len(read) == 15  # below the cap: every document
