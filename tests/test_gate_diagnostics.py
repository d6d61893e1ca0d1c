"""``gate.diagnostics``: the judge gate also records (never decides on) its gain per text
source, BM25 beside it and the known-item judge; pseudo-queries know the document they came
from; lower-case " . " sentences are split. HashEncoder stub, BM25 judge."""

import numpy as np
import pytest

from antigravity.adaptation.corpus_queries import pseudo_queries
from antigravity.adaptation.gates import RISK_LEVELS, JudgeGate, judged_pseudo_texts, paired_gain, risk_gain
from tests.conftest import HashEncoder
from tests.test_gate_power import _engine, _traffic


def test_lower_case_stop_between_spaces_splits_sentences():
    text = " . ".join(f"word{i} " + " ".join(["alpha"] * 9) for i in range(4)) + " ."
    docs = {"d1": {"title": "", "text": text}}
    sents = pseudo_queries(docs, 0, 100, seed=0)
    assert len(sents) == 4  # one run-on "sentence" of 40 words before the fix
    assert sorted(s.split()[0] for s in sents) == [f"word{i}" for i in range(4)]
    capital = {"d1": {"title": "", "text": "First one has enough words to count here. Second one also has just enough words here."}}
    assert len(pseudo_queries(capital, 0, 100, seed=0)) == 2


def test_pseudo_texts_with_sources_name_the_document_they_came_from():
    rng = np.random.default_rng(0)
    fields = {f"d{i}": {"title": f"Title number {i} of this doc", "text": " ".join(f"Sentence {i} {j} " + " ".join(rng.choice(["a", "b", "c"], 8)) + "." for j in range(3))} for i in range(60)}
    texts, src = judged_pseudo_texts(fields, [], [], 40, 0.5, seed=0, with_sources=True)
    assert texts == judged_pseudo_texts(fields, [], [], 40, 0.5, seed=0)  # same texts as without sources
    assert len(texts) == len(src) == 40
    for t, d in zip(texts, src):
        assert t == fields[d]["title"] or t in fields[d]["text"]
    texts, src = pseudo_queries(fields, 5, 5, seed=1, with_sources=True)
    assert all(t == fields[d]["title"] or t in fields[d]["text"] for t, d in zip(texts, src))


def test_paired_gain():
    assert paired_gain(np.zeros(5)) == (0.0, 1.0)
    assert paired_gain(np.zeros(0)) == (0.0, 1.0)
    d, p = paired_gain(np.array([0.1, 0.2, 0.15, 0.12]))
    assert d == pytest.approx(0.1425) and p < 0.01
    assert paired_gain(-np.array([0.1, 0.2, 0.15, 0.12]))[1] > 0.99


def test_risk_gain_weighs_losses_by_one_plus_risk():
    d = np.array([0.1, -0.05, 0.02, 0.0, -0.01])
    for r in (0.0, 1.0, 5.0):
        z = np.array([0.1, -0.05 * (1 + r), 0.02, 0.0, -0.01 * (1 + r)])
        assert risk_gain(d, r) == pytest.approx(paired_gain(z))
    assert risk_gain(d, 0.0) == pytest.approx(paired_gain(d))  # risk 0 is the plain gain
    # a candidate that helps most texts a little and hurts a few a lot: positive plain gain, negative at risk 5
    mixed = np.array([0.01] * 18 + [-0.06, -0.07])
    assert paired_gain(mixed)[0] > 0 and risk_gain(mixed, 5.0)[0] < 0 and risk_gain(mixed, 5.0)[1] > 0.5
    assert risk_gain(np.abs(mixed), 5.0) == pytest.approx(paired_gain(np.abs(mixed)))  # no loss, no penalty


def _decisions(tmp_path, diagnostics):
    e = _engine(tmp_path / str(diagnostics), gate__min_judged_texts=120, gate__diagnostics=diagnostics)
    _traffic(e)
    r = e.run_sedimentation_cycle()
    docs = {d: e.adaptation_context().document_fields(d) for d in e.adaptation_context().doc_ids}
    e.close()
    return r, docs


def test_diagnostics_are_recorded_and_never_change_the_decision(tmp_path, monkeypatch):
    known = []
    orig = JudgeGate.build.__func__

    def spy(cls, judge, texts, vectors, doc_ids, **kwargs):
        known.append((list(texts), kwargs.get("known_items")))
        return orig(cls, judge, texts, vectors, doc_ids, **kwargs)

    monkeypatch.setattr(JudgeGate, "build", classmethod(spy))
    off, _ = _decisions(tmp_path, False)
    assert known[-1][1] is None  # no known items without diagnostics
    on, docs = _decisions(tmp_path, True)
    assert (on.promoted, on.reason) == (off.promoted, off.reason)
    gm_on, gm_off = on.metrics["gate_metrics"], off.metrics["gate_metrics"]
    assert "by_source" not in gm_off and "also" not in gm_off and "risk" not in gm_off
    risk = gm_on["risk"]
    wins, losses = risk["wins_losses"]
    assert wins + losses <= gm_on["n"]
    deltas = [risk[f"{r:g}"]["delta"] for r in RISK_LEVELS]
    assert all(x <= gm_on["delta"] + 1e-12 for x in deltas) and deltas == sorted(deltas, reverse=True)  # more risk weight, lower gain
    assert (deltas[0] < gm_on["delta"]) == (losses > 0)
    by = gm_on["by_source"]
    jt = gm_on["judged_texts"]
    assert jt["pseudo"] > 0 and set(by) <= {"traffic", "pseudo"}
    assert sum(v["n"] for v in by.values()) == gm_on["n"]
    # the overall gain is the n-weighted mean of the per-source gains
    assert sum(v["n"] * v["delta"] for v in by.values()) / gm_on["n"] == pytest.approx(gm_on["delta"], abs=1e-9)
    ki = gm_on["also"]["known_item"]
    assert 0 < ki["n"] <= jt["pseudo"] and set(ki["by_source"]) == {"pseudo"}  # only pseudo-queries have a known item
    # the known items handed to the gate are the documents the pseudo-queries came from; traffic has none
    texts, items = known[-1]
    assert items[: jt["traffic"]] == [None] * jt["traffic"]
    for t, d in zip(texts[jt["traffic"]:], items[jt["traffic"]:]):
        assert t in docs[d]["text"] or t == docs[d]["title"], (t, d)


def test_known_item_judge_scores_the_source_document():
    D = np.eye(4, dtype=np.float32)
    Q = np.array([[1, 0.1, 0, 0], [0, 1, 0.2, 0]], np.float32)

    class Fixed:
        name = "fixed"

        def rank(self, texts, k):
            return np.array([[0, -1, -1, -1][:k], [1, -1, -1, -1][:k]])  # one judged document each

    gate = JudgeGate.build(Fixed(), ["a", "b"], Q, ["d0", "d1", "d2", "d3"], known_items=[None, "d2"], sources=["traffic", "pseudo"], min_queries=2)
    swap = np.eye(4, dtype=np.float32)[[0, 2, 1, 3]]  # the candidate's "query adapter": moves query b onto d2
    from antigravity.adaptation import gates

    orig = gates.serve
    try:
        gates.serve = lambda qa, da, Q_, D_: ((Q_ @ swap) if qa is not None else Q_, D_)
        dec = gate.decide((None, None), ("swap", None), ["d0", "d1", "d2", "d3"], D)
    finally:
        gates.serve = orig
    ki = dec.metrics["also"]["known_item"]
    assert ki["n"] == 1 and ki["delta"] > 0  # d2 rose from rank 2 to rank 1 for query b
    assert dec.metrics["delta"] < 0  # while the fixed judge (d1 first for b) sees a loss


def test_offline_distillation_records_its_stopping_curve_and_watches_the_deciding_half(tmp_path):
    from antigravity.adaptation.distillation import DistillationConfig
    from tests.test_gate_power import WORDS
    from tests.test_gate_power import _Teacher

    def run(diagnostics, patience):
        e = _engine(tmp_path / f"{diagnostics}{patience}", teacher__name="none", gate__min_judged_texts=60, gate__diagnostics=diagnostics)
        rng = np.random.default_rng(3)
        texts = [" ".join(rng.choice(WORDS, size=4)) + f" q{i}" for i in range(100)]
        rep = e.run_offline_distillation(texts, teacher=_Teacher(), config=DistillationConfig(rank=8, epochs=6, patience=patience))
        e.close()
        return rep.metrics

    off, on = run(False, 100), run(True, 100)
    assert len(off["stopping_curve"]) == 6 and "watched_curve" not in off  # all epochs ran, each scored
    assert on["stopping_curve"] == off["stopping_curve"]  # watching never changes training
    assert len(on["watched_curve"]) == 6 and on["watched_curve"] != on["stopping_curve"]
    assert on["best_epoch"] == int(np.argmax(on["stopping_curve"]))  # first best kept
    short = run(False, 1)
    assert len(short["stopping_curve"]) <= 6 and short["stopping_curve"] == off["stopping_curve"][: len(short["stopping_curve"])]
    assert len(short["stopping_curve"]) - 1 - short["best_epoch"] == 1 or len(short["stopping_curve"]) == 6  # stopped one epoch after its best


def test_shallow_judges_count_only_the_judges_top_documents():
    from antigravity.adaptation import gates
    from antigravity.evaluation import evaluate_per_query

    D = np.eye(4, dtype=np.float32)
    cur_q = np.array([[0.5, 1.0, 0.3, 0.1]], np.float32)  # current ranks d1, d0, d2, d3
    cand_q = np.array([[1.0, 0.1, 0.2, 0.9]], np.float32)  # candidate ranks d0, d3, d2, d1

    class Fixed:
        name = "fixed"

        def rank(self, texts, k):
            return np.array([[0, 1, 2, 3][:k]])  # the judge: d0, d1, d2, d3

    ids = ["d0", "d1", "d2", "d3"]
    gate = JudgeGate.build(Fixed(), ["a"], cur_q, ids, known_items=[None], sources=["traffic"], min_queries=1)
    orig = gates.serve
    try:
        gates.serve = lambda qa, da, Q_, D_: (cand_q if qa is not None else Q_, D_)
        dec = gate.decide((None, None), ("cand", None), ids, D)
    finally:
        gates.serve = orig
    also = dec.metrics["also"]
    run = lambda order: {"h0": {ids[i]: float(4 - r) for r, i in enumerate(order)}}  # noqa: E731
    for depth, qrels in ((1, {"d0": 3}), (3, {"d0": 3, "d1": 3, "d2": 3})):
        want = evaluate_per_query({"h0": qrels}, run([0, 3, 2, 1]))["h0"]["ndcg@10"] - evaluate_per_query({"h0": qrels}, run([1, 0, 2, 3]))["h0"]["ndcg@10"]
        assert also[f"fixed@{depth}"]["delta"] == pytest.approx(want)
    assert also["fixed@1"]["delta"] > 0 > also["fixed@3"]["delta"]  # the judge's first document rose; its top 3 were split up


class _Ranked:
    """A judge with fixed rankings per text (row indices, best first)."""

    def __init__(self, name, rows):
        self.name, self.rows, self.calls = name, rows, []

    def rank(self, texts, k):
        self.calls.append(k)
        out = np.full((len(texts), k), -1, np.int64)
        for i, t in enumerate(texts):
            r = self.rows[t][:k]
            out[i, : len(r)] = r
        return out


def test_fusion_judge_is_reciprocal_rank_fusion_of_the_judges():
    from antigravity.adaptation.gates import RRF_DEPTH, RRF_K, FusionJudge

    a = _Ranked("teacher", {"q": [0, 1, 2, 3], "e": []})
    b = _Ranked("bm25", {"q": [3, 2, 4], "e": [5]})
    fused = FusionJudge([a, b])
    assert fused.name == "rrf(teacher+bm25)"
    rows = fused.rank(["q", "e"], 4)
    assert a.calls == b.calls == [RRF_DEPTH]  # each judge ranks to the fusion depth
    score = lambda ranks: sum(1 / (RRF_K + r) for r in ranks)  # noqa: E731
    # doc 3: ranks 4 and 1; doc 2: ranks 3 and 2; the others one rank each
    expected = sorted([0, 1, 2, 3, 4], key=lambda d: -{0: score([1]), 1: score([2]), 2: score([3, 2]), 3: score([4, 1]), 4: score([3])}[d])[:4]
    assert rows[0].tolist() == expected
    assert rows[0].tolist() == [3, 2, 0, 1]  # found by both judges: first (1/64 + 1/61 > 1/63 + 1/62 > 1/61)
    tie = FusionJudge([_Ranked("x", {"q": [7, 8]}), _Ranked("y", {"q": [8, 7]})]).rank(["q"], 2)
    assert tie.tolist() == [[7, 8]]  # equal scores: first appearance (the first judge's order)
    assert rows[1].tolist() == [5, -1, -1, -1]  # one judge found nothing: the other's list, padded


def test_teacher_judge_encodes_the_same_texts_once():
    from antigravity.adaptation.gates import TeacherJudge

    seen = []
    Td = np.eye(3, dtype=np.float32)
    judge = TeacherJudge(Td, lambda texts: seen.append(list(texts)) or np.eye(3, dtype=np.float32)[: len(texts)])
    assert judge.rank(["a", "b"], 2)[:, 0].tolist() == [0, 1]
    assert judge.rank(["a", "b"], 3).shape == (2, 3)
    assert judge.rank(["b"], 1).tolist() == [[0]]
    assert seen == [["a", "b"], ["b"]]  # the second ranking of the same texts reused their encodings


def test_diagnostics_record_the_judge_fused_with_bm25(tmp_path):
    from antigravity.adaptation.gates import BM25Judge

    docs = ["apple banana fruit", "car engine wheel", "banana split dessert", "engine oil change"]
    texts = ["banana fruit", "engine oil", "wheel car"]
    teacher = _Ranked("teacher", {"banana fruit": [2, 0], "engine oil": [0, 3], "wheel car": [1]})
    Q = np.eye(4, dtype=np.float32)[:3]
    gate = JudgeGate.build(teacher, texts, Q, ["d0", "d1", "d2", "d3"], also_judges=[BM25Judge(docs)], min_queries=2)
    assert set(gate.also) == {"bm25", "rrf(teacher+bm25)"}
    assert gate.qrels == {"h0": {"d2": 3, "d0": 3}, "h1": {"d0": 3, "d3": 3}, "h2": {"d1": 3}}  # the judge itself is unchanged
    fused = gate.also["rrf(teacher+bm25)"]
    assert list(fused["h1"]) == ["d3", "d0", "d1"]  # both judges found d3; then the teacher's d0 (rank 1) before BM25's d1 (rank 2)
    dec = gate.decide((None, None), (None, None), ["d0", "d1", "d2", "d3"], np.eye(4, dtype=np.float32))
    assert dec.metrics["also"]["rrf(teacher+bm25)"]["delta"] == 0.0


def test_fused_teacher_scores_keep_the_teachers_values_in_the_fused_order():
    from antigravity.adaptation.gates import fused_teacher_scores, rrf_order

    rng = np.random.default_rng(0)
    ts = rng.normal(size=(3, 250)).astype(np.float32)
    lex = np.full((3, 5), -1, np.int64)
    lex[0, :3] = [7, 3, 100]
    lex[1, :1] = [int(np.argmax(ts[1]))]  # the lexical ranker agrees with the teacher's top document
    out = fused_teacher_scores(ts, lex)
    assert out.dtype == np.float32 and out.shape == ts.shape
    for i in range(3):
        assert np.array_equal(np.sort(out[i]), np.sort(ts[i]))  # the same values: the temperature keeps its meaning
        teacher_order = np.argsort(-ts[i], kind="stable")
        fused = rrf_order([teacher_order[:100], lex[i]])
        assert np.argsort(-out[i], kind="stable")[: len(fused)].tolist() == fused
    assert np.array_equal(out[2], ts[2])  # no lexical hit: the teacher's ranking unchanged
    assert np.array_equal(out[1], ts[1])  # agreeing rankings change nothing
    assert not np.array_equal(out[0], ts[0])  # lexical hits outside the teacher's top move up
    # documents neither ranking holds keep the teacher's order below the fused ones
    tail = [d for d in np.argsort(-ts[0], kind="stable") if d not in set(rrf_order([np.argsort(-ts[0], kind="stable")[:100], lex[0]]))]
    assert np.argsort(-out[0], kind="stable")[-len(tail):].tolist() == tail
