"""Sedimentation cycles: turn accumulated traffic signals into a new adapter version, gate
it, and switch to it atomically — or keep the current one and say why.

A cycle:

1. snapshots the traffic buffer (raw query vectors + their top-k ids) and the raw document
   vectors (never the served ones: adapters never compound);
2. asks the configured signal definition (:mod:`antigravity.adaptation.signals`) for targets;
   in hybrid mode blends them with teacher guidance (:mod:`antigravity.adaptation.distillation`);
3. trains a fresh identity-initialised adapter (seeded);
4. runs the quality gate (:class:`~antigravity.adaptation.gates.DevSetGate` when a labelled dev split
   was given, else the label-free :class:`~antigravity.adaptation.gates.JudgeGate` on held-out traffic);
5. if promoted, re-materialises ``adapter(raw)`` into the idle slot and flips the served
   version in one step (:meth:`AntigravityEngine.activate`).

Every cycle returns a :class:`CycleReport` and logs it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from antigravity.adaptation.adapter import ResidualAdapter
from antigravity.core.errors import AdaptationError, ConfigurationError, DocumentError, TeacherError
from antigravity.adaptation.gates import DevSetGate, GateDecision, JudgeGate, ProxyGate, TeacherJudge, UnavailableGate, bm25_judge, resolve_judge, serve as _serve, split_held_out, top_rows as _top_rows
from antigravity.adaptation.signals import Traffic, get_signal
from antigravity.adaptation.training import fit_blend

if TYPE_CHECKING:  # pragma: no cover
    from antigravity.engine import AntigravityEngine

logger = logging.getLogger(__name__)


@dataclass
class CycleReport:
    """Outcome of one cycle. Times in seconds; ``drift`` = mean cosine(raw, served) of docs
    under the candidate (1.0 = identity); gate scores are NDCG@10 on the dev split or against
    the label-free judge (see :mod:`antigravity.adaptation.gates`)."""

    version: int | None
    promoted: bool
    reason: str
    signal: str = ""
    n_signals: int = 0
    n_targets: int = 0
    loss_before: float | None = None
    loss_after: float | None = None
    drift: float | None = None
    gate: str = ""
    gate_current: float | None = None
    gate_candidate: float | None = None
    train_time_s: float = 0.0
    materialise_time_s: float = 0.0
    time_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    # the adapters judged (query, doc): what was served before the cycle and the trained
    # candidate, promoted or not — the benchmark scores both to measure the gate's decisions
    current: tuple | None = field(default=None, repr=False)
    candidate: tuple | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("current", "candidate")}


def training_recipe(settings, signal) -> dict[str, float]:
    """The signal's recommended ``lr``/``epochs``/``batch_size``/``identity_reg``, with any
    value set explicitly in ``adaptation`` settings taking precedence."""
    recipe = dict(getattr(signal, "recipe", {"lr": 1e-3, "epochs": 20, "batch_size": 256, "identity_reg": 1e-3}))
    for key in ("lr", "epochs", "batch_size", "identity_reg"):
        value = getattr(settings, key)
        if value is not None:
            recipe[key] = value
    return recipe


def traffic_arrays(engine: "AntigravityEngine", doc_ids: list[str], D: np.ndarray, current=None) -> Traffic:
    """The engine's traffic buffer as arrays (unknown doc ids become −1), with served-space
    views under ``current`` (a :class:`~antigravity.engine.ServedVersion`)."""
    records = list(engine._traffic)
    index = {d: i for i, d in enumerate(doc_ids)}
    k = max((len(r.doc_ids) for r in records), default=0)
    Q = np.stack([r.query_vector for r in records]).astype(np.float32) if records else np.zeros((0, D.shape[1]), np.float32)
    top = np.full((len(records), k), -1, np.int64)
    sc = np.zeros((len(records), k), np.float32)
    for i, r in enumerate(records):
        for j, (d, s) in enumerate(zip(r.doc_ids, r.scores)):
            top[i, j] = index.get(d, -1)
            sc[i, j] = s
    Qs, Ds = _serve(getattr(current, "query_adapter", None), getattr(current, "doc_adapter", None), Q, D)
    return Traffic(Qs, top, sc, Ds, [r.text for r in records], raw_queries=Q, raw_docs=D)


def _subset(t: Traffic, keep: np.ndarray) -> Traffic:
    texts = [t.texts[i] for i in keep] if t.texts is not None else None
    return Traffic(t.queries[keep], t.top[keep], t.scores[keep], t.docs, texts, raw_queries=t.raw_queries[keep], raw_docs=t.raw_docs)


def candidate_adapters(current, side: str, dim: int, rank: int, seed: int):
    """Adapters to train this cycle: a warm-started clone of the current version's adapter
    on each side the targets move (anchored at its weights, so the regulariser keeps it near
    what is served), a fresh identity adapter where none exists; sides the targets do not
    move keep the current adapter object unchanged (no re-materialisation needed)."""
    import torch

    torch.manual_seed(seed)
    moves_q, moves_d = side in ("query", "both"), side in ("doc", "both")
    cur_q, cur_d = current.query_adapter, current.doc_adapter
    if moves_q and moves_d and cur_q is None and cur_d is None:
        shared = ResidualAdapter(dim, rank)  # a symmetric correction: one map for both sides
        return shared, shared
    if cur_q is not None and cur_q is cur_d and moves_q and moves_d:
        shared = cur_q.clone()
        return shared, shared
    q = (cur_q.clone() if cur_q is not None else ResidualAdapter(dim, rank)) if moves_q else cur_q
    d = (cur_d.clone() if cur_d is not None else ResidualAdapter(dim, rank)) if moves_d else cur_d
    return q, d


def label_free_gate(engine: "AntigravityEngine", texts: list[str | None], vectors: np.ndarray, doc_ids: list[str], *, teacher_docs: np.ndarray | None = None):
    """The gate used without a labelled dev split (:class:`~antigravity.adaptation.gates.JudgeGate` or,
    with ``gate.judge = "proxy"``, :class:`~antigravity.adaptation.gates.ProxyGate`) for held-out traffic
    ``texts`` / raw ``vectors (m, d)``. A teacher judge that fails falls back to BM25 (the
    failure is counted in ``stats()["teacher_failures"]``); held-out queries without text
    cannot be judged and are dropped. ``teacher_docs``: teacher vectors of ``doc_ids`` when
    the caller already has them."""
    g = engine.settings.gate
    name = resolve_judge(engine)
    if name == "proxy":
        return ProxyGate(vectors)
    keep = [i for i, t in enumerate(texts) if t]
    texts = [texts[i] for i in keep]
    vectors = vectors[keep]
    kwargs = {"min_queries": g.min_queries, "min_gain": g.min_gain, "alpha": g.alpha}
    if name == "teacher":
        from antigravity.core.errors import failure_kind

        try:
            helper = engine.teacher_helper
            Td = teacher_docs if teacher_docs is not None else helper.get_teacher_embeddings(engine.document_texts(doc_ids))
            judge = TeacherJudge(Td, lambda t: helper.get_teacher_embeddings(t, cache=False))
            gate = JudgeGate.build(judge, texts, vectors, doc_ids, **kwargs)
            if engine.settings.mode != "hybrid":
                helper.release()  # hybrid keeps its teacher between cycles; other modes do not
            return gate
        except (TeacherError, DocumentError, ConfigurationError, ValueError) as exc:  # no usable teacher: BM25 judges
            kind = failure_kind(exc) if isinstance(exc, TeacherError) else type(exc).__name__
            engine.record_teacher_failure("judge_" + kind, exc)
    try:
        judge = bm25_judge(engine, doc_ids)
    except DocumentError as exc:  # no stored text to judge with
        return UnavailableGate("judge_bm25_ndcg@10", f"no judge available ({exc})")
    return JudgeGate.build(judge, texts, vectors, doc_ids, **kwargs)


def run_cycle(engine: "AntigravityEngine", teacher_guidance=None) -> CycleReport:
    """One sedimentation cycle on ``engine`` (see module doc). Never raises on a failed
    cycle: errors become a rejected report and the current version keeps serving.

    Args:
        teacher_guidance: optional ``callable(traffic, targets) -> targets`` that blends
            teacher guidance into the homeostatic targets (hybrid mode).
    """
    s = engine.settings.adaptation
    t0 = time.perf_counter()
    signal = get_signal(s.signal)
    n_signals = len(engine._traffic)
    if n_signals == 0:
        msg = "no signals: no search traffic recorded since start; nothing to learn (no-op)"
        logger.info("sedimentation cycle skipped: %s", msg)
        return CycleReport(None, False, msg, signal=signal.name)
    doc_ids, D = engine.raw_matrix()
    if len(doc_ids) == 0:
        return CycleReport(None, False, "no documents stored (no-op)", signal=signal.name, n_signals=n_signals)
    cur = engine.served_version
    traffic = traffic_arrays(engine, doc_ids, D, cur)
    gate = engine._validation
    held_texts: list[str] = []
    held_vecs = np.zeros((0, D.shape[1]), np.float32)
    if gate is None:  # label-free: judge held-out traffic that no adapter of this engine trains on
        texts = traffic.texts if traffic.texts is not None else [None] * len(traffic.queries)
        train, hold = split_held_out(texts, engine.settings.gate.holdout_fraction)
        held_vecs = traffic.raw_queries[hold]
        held_texts = [texts[i] for i in hold]
        traffic = _subset(traffic, train)
    report = CycleReport(None, False, "", signal=signal.name, n_signals=n_signals, gate=getattr(gate, "name", ""))
    try:
        if not np.isfinite(D).all() or not np.isfinite(traffic.raw_queries).all():
            raise AdaptationError("non-finite raw vectors in store or traffic; cycle aborted")
        if len(traffic.queries) == 0:
            raise AdaptationError(f"{n_signals} recorded queries leave none to train on after holding out {len(held_vecs)} for the gate")
        targets = signal.targets(traffic, s.seed)
        if teacher_guidance is not None:
            targets = teacher_guidance(traffic, targets)
        report.n_targets = targets.n
        t1 = time.perf_counter()
        side = "both" if targets.teacher is not None and targets.teacher_weight > 0 else targets.side
        q_ad, d_ad = candidate_adapters(cur, side, D.shape[1], min(s.rank, D.shape[1]), s.seed)
        recipe = training_recipe(s, signal)
        res = fit_blend(
            q_ad if side in ("query", "both") else None, d_ad if side in ("doc", "both") else None,
            targets.vector if targets.vector is not None else targets.listwise, targets.teacher, D,
            teacher_weight=targets.teacher_weight, temperature=engine.settings.teacher.temperature,
            weight_decay=s.weight_decay, seed=s.seed, **recipe,
        )
        report.loss_before, report.loss_after = res.loss_before, res.loss_after
        report.train_time_s = time.perf_counter() - t1
        served_d = d_ad.transform(D) if d_ad is not None else D
        report.drift = float(np.mean(np.sum(served_d * D, axis=1)))
        report.current, report.candidate = (cur.query_adapter, cur.doc_adapter), (q_ad, d_ad)
        if not engine.settings.gate.enabled:
            decision = GateDecision(True, "gate disabled")
        else:
            try:
                if gate is None:
                    gate = label_free_gate(engine, held_texts, held_vecs, doc_ids)
                if isinstance(gate, DevSetGate):
                    gate.tolerance = engine.settings.gate.tolerance
                decision = gate.decide(report.current, report.candidate, doc_ids, D, loss_before=res.loss_before, loss_after=res.loss_after)
            except Exception as exc:  # noqa: BLE001 - a gate that cannot judge rejects; a cycle never raises
                logger.warning("gate failed (%s: %s); the candidate is rejected", type(exc).__name__, exc)
                decision = GateDecision(False, f"gate failed ({type(exc).__name__}: {exc}); kept the current version")
            report.gate = getattr(gate, "name", "unavailable")
        report.gate_current, report.gate_candidate = decision.current, decision.candidate
        report.extra["gate_metrics"] = decision.metrics
        ok, why = decision.ok, decision.reason
        if ok:
            t2 = time.perf_counter()
            version = engine._next_version()
            engine.activate(d_ad, q_ad, version=version, meta={"signal": signal.name, **{k: v for k, v in report.to_dict().items() if k != "extra"}}, raw=(doc_ids, D))
            report.materialise_time_s = time.perf_counter() - t2
            report.version, report.promoted, report.reason = version, True, "promoted: " + why
        else:
            report.reason = "rejected: " + why
    except AdaptationError as exc:
        report.reason = f"aborted: {exc}"
    report.time_s = time.perf_counter() - t0
    logger.info("sedimentation cycle: %s", report.reason)
    engine._record_cycle(report)
    return report
