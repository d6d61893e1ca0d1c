import numpy as np
import pytest

from antigravity import AntigravityEngine
from antigravity.adaptation.corpus_queries import pseudo_queries
from antigravity.adaptation.distillation import DistillationConfig, TeacherDistillationHelper, teacher_targets
from antigravity.core.errors import AdaptationError, ConfigurationError, TeacherError
from antigravity.settings import Settings
from tests.conftest import HashEncoder
from tests.test_sedimentation import _corpus, _queries


class SpyTeacher(HashEncoder):
    """A 48-d teacher (student is 32-d): different space, different dimension."""

    def __init__(self, fail: bool = False):
        super().__init__(48, name="spy-teacher")
        self.fail = fail
        self.encode_calls = 0
        self.released = 0

    def encode(self, texts, show_progress=False):
        self.encode_calls += 1
        if self.fail:
            raise RuntimeError("teacher exploded")
        return super().encode(texts)

    def release(self):
        self.released += 1


def _engine(tmp_path, teacher=None, **kw):
    kw.setdefault("adaptation__rank", 8)
    kw.setdefault("adaptation__epochs", 5)
    e = AntigravityEngine(data_dir=str(tmp_path), store__location=":memory:", encoder=HashEncoder(32), teacher=teacher, **kw)
    e.ingest(_corpus())
    return e


def test_helper_is_lazy_and_releases(tmp_path):
    t = SpyTeacher()
    h = TeacherDistillationHelper(t, student_dim=32, cache_dir=tmp_path)
    assert not h.loaded and t.encode_calls == 0
    out = h.get_teacher_embeddings(["a b", "c"])
    assert out.shape == (2, 48) and out.dtype == np.float32 and h.loaded
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    assert h.teacher_latency_ms is not None and h.teacher_latency_ms >= 0
    info = h.check_dimension_compatibility()
    assert info["student_dim"] == 32 and info["teacher_dim"] == 48 and not info["same_dim"] and not info["alignment_fitted"]
    h.release()
    assert not h.loaded


def test_distillation_targets_blend(tmp_path):
    h = TeacherDistillationHelper(SpyTeacher(), student_dim=32, cache_dir=tmp_path)
    texts = [t for _, t in _corpus(60)]
    S = HashEncoder(32).encode(texts)
    cur = S[:5]
    np.testing.assert_allclose(h.generate_distillation_targets(texts[:5], cur, 0.0), cur, atol=1e-6)  # w = 0: current
    assert not h.loaded  # ... without touching the teacher
    with pytest.raises(TeacherError, match="alignment"):
        h.generate_distillation_targets(texts[:5], cur, 0.5)
    h.fit_alignment(h.get_teacher_embeddings(texts), S)
    assert h.check_dimension_compatibility()["alignment_fitted"]
    t1 = h.generate_distillation_targets(texts[:5], cur, 1.0)
    np.testing.assert_allclose(t1, h.alignment.map(h.get_teacher_embeddings(texts[:5])), atol=1e-6)
    half = h.generate_distillation_targets(texts[:5], cur, 0.5)
    assert half.shape == (5, 32)
    np.testing.assert_allclose(np.linalg.norm(half, axis=1), 1, atol=1e-5)
    for bad in (-0.1, 1.5, float("nan"), "0.5"):
        with pytest.raises(ConfigurationError, match="teacher_weight"):
            h.generate_distillation_targets(texts[:5], cur, bad)
    m = h.compute_alignment_metric(S[:10], S, h.get_teacher_embeddings(texts[:10]), h.get_teacher_embeddings(texts))
    assert 0.0 <= m["overlap@10"] <= 1.0 and -1.0 <= m["mean_cosine"] <= 1.0


def test_teacher_targets_candidates():
    rng = np.random.default_rng(0)
    D = rng.standard_normal((50, 8)).astype(np.float32)
    Td = rng.standard_normal((50, 12)).astype(np.float32)
    t = teacher_targets(D[:4], D, Td[:4], Td, 0.05, 5)
    assert t.candidates.shape == (4, 10)
    assert all(len(set(row)) == 10 for row in t.candidates)
    np.testing.assert_allclose(t.probs.sum(1), 1, atol=1e-5)
    full = teacher_targets(D[:4], D, Td[:4], Td, 0.05, 0)
    assert full.candidates is None and full.probs.shape == (4, 50)


def test_offline_stages_and_release(tmp_path):
    teacher = SpyTeacher()
    e = _engine(tmp_path, teacher, gate__enabled=False)
    events = []
    rep = e.run_offline_distillation(_queries(40), config=DistillationConfig(rank=8, epochs=3), callback=lambda ev, d: events.append(ev))
    assert [ev for ev in events if ev not in ("epoch", "train_run")] == ["init_teacher", "build_set", "teacher_inference", "train", "apply", "done", "release_teacher"]
    assert rep.promoted and rep.version == 1 and e.served_version.version == 1
    for key in ("distill_loss", "n_texts", "n_tokens", "teacher_latency_ms", "pretraining_time_s"):
        assert key in rep.metrics
    assert rep.metrics["n_texts"] == 40
    assert teacher.released == 1
    assert e.search("fever aspirin", k=3)
    e.close()


def test_offline_teacher_failure_falls_back_and_releases(tmp_path):
    teacher = SpyTeacher(fail=True)
    e = _engine(tmp_path, teacher)
    rep = e.run_offline_distillation(_queries(10))
    assert not rep.promoted and "teacher failed" in rep.reason
    assert teacher.released == 1 and e.served_version.version == 0
    assert sum(e.stats()["teacher_failures"].values()) == 1
    assert e.search("fever", k=2)  # search never fails
    e.close()


def test_validation_order(tmp_path):
    # teacher weight out of range: rejected at configuration time
    with pytest.raises(ConfigurationError, match="teacher.weight"):
        Settings.load(teacher__weight=1.5)
    with pytest.raises(ConfigurationError, match="teacher.temperature"):
        Settings.load(teacher__temperature=0)
    # a mode that needs a teacher with none configured
    with pytest.raises(ConfigurationError, match="needs a teacher"):
        Settings.load(mode="offline", teacher__name="none")
    # temperature <= 0 in the distillation config, before any work (teacher untouched)
    teacher = SpyTeacher()
    e = _engine(tmp_path, teacher)
    with pytest.raises(ConfigurationError, match="temperature"):
        e.run_offline_distillation(_queries(5), config=DistillationConfig(temperature=0.0))
    assert teacher.encode_calls == 0
    # fewer than 2 texts: error, nothing changed
    with pytest.raises(AdaptationError, match="at least 2"):
        e.run_offline_distillation(["only one"])
    assert e.served_version.version == 0
    e.close()


def _served_scores(e, probes):
    return np.array([[h.score for h in hs] for hs in e.search_batch(probes, k=10, record=False)])


def test_hybrid_weight_zero_reproduces_baseline(tmp_path):
    probes = ["fever aspirin pain", "cat dog walk"]
    out = {}
    for mode in ("baseline", "hybrid"):
        teacher = SpyTeacher()
        e = _engine(tmp_path / mode, teacher, mode=mode, teacher__weight=0.0, gate__enabled=False)
        e.search_batch(_queries())
        assert e.run_sedimentation_cycle().promoted
        out[mode] = _served_scores(e, probes)
        assert teacher.encode_calls == 0  # w = 0 never touches the teacher
        e.close()
    np.testing.assert_array_equal(out["baseline"], out["hybrid"])


def test_hybrid_weight_one_ignores_homeostatic_targets(tmp_path):
    probes = ["fever aspirin pain", "gene tumor drug"]
    out = {}
    for signal in ("anisotropy", "hubness"):
        e = _engine(tmp_path / signal, SpyTeacher(), mode="hybrid", teacher__weight=1.0, gate__enabled=False, adaptation__signal=signal)
        e.search_batch(_queries())
        rep = e.run_sedimentation_cycle()
        assert rep.promoted, rep.reason
        out[signal] = _served_scores(e, probes)
        e.close()
    np.testing.assert_allclose(out["anisotropy"], out["hubness"], atol=1e-5)


def test_hybrid_teacher_failure_degrades_to_baseline(tmp_path):
    e = _engine(tmp_path, SpyTeacher(fail=True), mode="hybrid", teacher__weight=0.5, gate__enabled=False)
    e.search_batch(_queries())
    rep = e.run_sedimentation_cycle()
    assert rep.promoted  # homeostatic targets alone
    e.search_batch(_queries(seed=5))
    e.run_sedimentation_cycle()
    assert e.stats()["teacher_failures"] == {"TeacherError": 2} or sum(e.stats()["teacher_failures"].values()) == 2
    assert e.search("fever", k=3)
    e.close()


def test_set_mode_switches_and_releases(tmp_path):
    teacher = SpyTeacher()
    e = _engine(tmp_path, teacher, gate__enabled=False)
    e.set_mode("hybrid", teacher_weight=0.3)
    assert e.settings.mode == "hybrid" and e.settings.teacher.weight == 0.3
    e.search_batch(_queries())
    assert e.run_sedimentation_cycle().promoted
    assert e.stats()["teacher_loaded"]
    e.set_mode("baseline")
    assert not e.stats()["teacher_loaded"] and teacher.released >= 1
    with pytest.raises(ConfigurationError, match="teacher.weight"):
        e.set_mode("hybrid", teacher_weight=2.0)
    with pytest.raises(ConfigurationError, match="mode"):
        e.set_mode("turbo")
    assert e.settings.mode == "baseline"  # unchanged after the rejected switches
    assert e.stats()["mode_switches"] == 2
    e.close()


def test_pseudo_queries_deterministic():
    docs = {f"d{i}": {"title": f"Title {i}", "text": "First sentence has eight words in it here. Second sentence also has more than eight words in it."} for i in range(20)}
    a = pseudo_queries(docs, 5, 5, seed=3)
    assert a == pseudo_queries(docs, 5, 5, seed=3) and len(a) == 10
    assert a != pseudo_queries(docs, 5, 5, seed=4)


def test_serving_fusion_rescoring_and_fallback(tmp_path):
    """λ = 1 ranks the student's candidates by teacher cosine alone; λ = 0 is off; a failing
    teacher falls back to the student ranking and is counted."""
    teacher = SpyTeacher()
    e = _engine(tmp_path, teacher, teacher__fusion_candidates=50)
    q = "fever aspirin dose"
    student = e.search(q, k=50, record=False)
    e.reload_settings(teacher__fusion_weight=1.0)
    fused = e.search(q, k=5, record=False)
    t = SpyTeacher()
    tq = t.encode([q])[0]
    cand = [h.doc_id for h in student]
    texts = dict(_corpus())
    tcos = {d: float(t.encode([texts[d]])[0] @ tq) for d in cand}
    assert [round(h.score, 4) for h in fused] == sorted((round(v, 4) for v in tcos.values()), reverse=True)[:5]
    assert all(h.doc_id in cand for h in fused) and e.stats()["fused_searches"] == 1
    e.reload_settings(teacher__fusion_weight=0.5)
    half = e.search(q, k=3, record=False)
    s_score = {h.doc_id: h.score for h in student}
    for h in half:
        assert abs(h.score - (0.5 * s_score[h.doc_id] + 0.5 * tcos[h.doc_id])) < 1e-4
    teacher.fail = True
    e.teacher.clear_document_vectors()
    hits = e.search(q, k=5, record=False)  # never fails: student ranking
    assert [h.doc_id for h in hits] == [h.doc_id for h in student[:5]]
    assert any(k.startswith("fusion_") for k in e.stats()["teacher_failures"])
    e.close()


def test_offline_refit_on_dev_texts_after_gate(tmp_path):
    """With a dev gate given texts, the gated run picks the epoch count and a refit on the
    distillation + dev texts is served only if it does not lose on dev; without texts: no refit."""
    e = _engine(tmp_path, SpyTeacher())
    dev = _queries(20, seed=9)
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(20)}
    e.set_validation([f"q{i}" for i in range(20)], None, qrels, queries=dev)
    events = []
    rep = e.run_offline_distillation(_queries(40), config=DistillationConfig(rank=8, epochs=4, patience=2, refit=True), callback=lambda ev, d: events.append(ev))
    assert rep.promoted, rep.reason
    assert "refit" in events and rep.metrics["refit_n_texts"] == rep.metrics["n_texts"] + len(set(dev) - set(_queries(40)))
    assert rep.metrics["refit_epochs"] == rep.metrics["best_epoch"] + 1
    assert rep.metrics["refit_served"] == (rep.metrics["refit_dev_ndcg_optimistic"] >= rep.metrics["gate_candidate"])
    e.close()
    e = _engine(tmp_path, SpyTeacher())
    e.set_validation([f"q{i}" for i in range(20)], e.encoder.encode(dev), qrels)  # vectors only: no texts
    rep = e.run_offline_distillation(_queries(40), config=DistillationConfig(rank=8, epochs=4, patience=2, refit=True))
    assert "refit_served" not in rep.metrics
    e.close()


def test_set_mode_offline_pretrains_once_before_the_next_cycle(tmp_path):
    """``set_mode("offline")`` does what offline means: the next cycle first pre-trains from
    the teacher (on the traffic texts), once; later cycles do not pre-train again."""
    e = _engine(tmp_path, teacher=SpyTeacher(), teacher__name="spy", gate__enabled=False)
    e.run_sedimentation_cycle()  # baseline: no pre-training
    assert e.stats().get("pretrainings_run", 0) == 0
    e.set_mode("offline")
    e.search_batch(_queries(40))
    e.run_sedimentation_cycle()
    assert e.stats()["pretrainings_run"] == 1
    e.search_batch(_queries(20, seed=3))
    e.run_sedimentation_cycle()
    assert e.stats()["pretrainings_run"] == 1  # once per switch
    e.close()


def test_offline_pretraining_deferred_without_texts_says_why(tmp_path, caplog):
    e = _engine(tmp_path, teacher=SpyTeacher(), teacher__name="spy", gate__enabled=False)
    e.set_mode("offline")
    with caplog.at_level("WARNING"):
        rep = e.run_sedimentation_cycle()  # no traffic yet: pre-training cannot run
    assert e.stats()["pretraining_deferred"] == 1 and "offline pre-training deferred" in caplog.text and "at least 2" in caplog.text
    assert "no signals" in rep.reason
    e.search_batch(_queries(40))
    e.run_sedimentation_cycle()
    assert e.stats()["pretrainings_run"] == 2  # retried, now with texts
    e.close()


def test_lexical_fusion_moves_the_teachers_targets_and_judge(tmp_path):
    """teacher.lexical_fusion: offline and hybrid targets follow RRF(teacher, BM25), the label-free
    judge is the same fused ranker; off, nothing changes."""
    probes = ["fever aspirin pain", "gene tumor drug"]
    out, reasons = {}, {}
    for fuse in (False, True):
        e = _engine(tmp_path / f"off{fuse}", SpyTeacher(), teacher__lexical_fusion=fuse, gate__min_queries=2)
        rep = e.run_offline_distillation(_queries(60), config=DistillationConfig(rank=8, epochs=3))
        reasons[fuse] = rep.reason
        out[fuse] = rep.candidate[0].transform(np.asarray(e.encoder.encode(probes), np.float32))
        e.close()
    assert "judge_teacher_ndcg@10" in reasons[False] and "judge_rrf(teacher+bm25)_ndcg@10" in reasons[True]
    assert not np.allclose(out[False], out[True])  # different targets, different candidate
    hybrid = {}
    for fuse in (False, True):
        e = _engine(tmp_path / f"hyb{fuse}", SpyTeacher(), mode="hybrid", teacher__weight=1.0, teacher__lexical_fusion=fuse, gate__enabled=False)
        e.search_batch(_queries())
        assert e.run_sedimentation_cycle().promoted
        hybrid[fuse] = _served_scores(e, probes)
        e.close()
    assert not np.allclose(hybrid[False], hybrid[True])


def test_lexical_fusion_without_bm25_falls_back_to_the_teacher_and_counts_it(tmp_path, monkeypatch):
    from antigravity.adaptation import gates
    from antigravity.core.errors import DocumentError

    def no_text(ctx, doc_ids):
        raise DocumentError("the store keeps no document text")

    monkeypatch.setattr(gates, "bm25_judge", no_text)
    e = _engine(tmp_path, SpyTeacher(), teacher__lexical_fusion=True, gate__min_queries=2)
    rep = e.run_offline_distillation(_queries(60), config=DistillationConfig(rank=8, epochs=3))
    assert "judge_teacher_ndcg@10" in rep.reason  # the teacher alone judged
    assert e.stats()["teacher_failures"].get("lexical_DocumentError", 0) >= 1
    e.close()


def test_offline_distillation_trains_at_teacher_temperature(tmp_path):
    """``teacher.temperature`` reaches offline distillation's loss (it was read by hybrid
    cycles only; offline kept 0.05 whatever the setting said)."""
    import torch

    def adapter_at(temperature: float):
        e = _engine(tmp_path / f"t{temperature}", teacher=SpyTeacher(), mode="offline", gate__enabled=False, teacher__temperature=temperature)
        try:
            e.run_offline_distillation(_queries(30))
            q = e.served_version.query_adapter
            return torch.cat([p.detach().flatten() for p in q.parameters()])
        finally:
            e.close()

    default, again, hot = adapter_at(0.05), adapter_at(0.05), adapter_at(5.0)
    assert torch.equal(default, again)  # deterministic, so the difference below is the setting's
    assert not torch.allclose(default, hot)
