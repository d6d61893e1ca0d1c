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
5. returns an :class:`~antigravity.adaptation.context.AdaptationReport` with the candidate;
   when the gate passed (``report.ok``) the engine's version manager re-materialises
   ``adapter(raw)`` into the idle slot and flips the served version in one step.

The cycle reads the engine only through an :class:`~antigravity.adaptation.context.AdaptationContext`.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import numpy as np

from antigravity.adaptation.adapter import ResidualAdapter
from antigravity.core.errors import AdaptationError, ConfigurationError, DocumentError, TeacherError
from antigravity.adaptation.gates import DevSetGate, GateDecision, JudgeGate, ProxyGate, UnavailableGate, bm25_judge, diagnostic_kwargs, resolve_judge, serve as _serve, split_held_out, teacher_judge, top_up_judged
from antigravity.adaptation.signals import Traffic, get_signal
from antigravity.adaptation.context import AdaptationContext, AdaptationReport, TrafficRecord
from antigravity.adaptation.training import fit_blend

#: a cycle's report (one result class for every adaptation run)
CycleReport = AdaptationReport

logger = logging.getLogger(__name__)


def training_recipe(settings, signal) -> dict[str, float]:
    """The signal's recommended ``lr``/``epochs``/``batch_size``/``identity_reg``, with any
    value set explicitly in ``adaptation`` settings taking precedence."""
    recipe = dict(getattr(signal, "recipe", {"lr": 1e-3, "epochs": 20, "batch_size": 256, "identity_reg": 1e-3}))
    for key in ("lr", "epochs", "batch_size", "identity_reg"):
        value = getattr(settings, key)
        if value is not None:
            recipe[key] = value
    return recipe


def traffic_arrays(records: list[TrafficRecord], doc_ids: list[str], D: np.ndarray, current: tuple[Any, Any] = (None, None)) -> Traffic:
    """Traffic records as arrays (unknown doc ids become −1), with served-space views under
    the ``current`` ``(query_adapter, doc_adapter)``."""
    index = {d: i for i, d in enumerate(doc_ids)}
    k = max((len(r.doc_ids) for r in records), default=0)
    Q = np.stack([r.query_vector for r in records]).astype(np.float32) if records else np.zeros((0, D.shape[1]), np.float32)
    top = np.full((len(records), k), -1, np.int64)
    sc = np.zeros((len(records), k), np.float32)
    for i, r in enumerate(records):
        for j, (d, s) in enumerate(zip(r.doc_ids, r.scores)):
            top[i, j] = index.get(d, -1)
            sc[i, j] = s
    Qs, Ds = _serve(current[0], current[1], Q, D)
    return Traffic(Qs, top, sc, Ds, [r.text for r in records], raw_queries=Q, raw_docs=D)


def _subset(t: Traffic, keep: np.ndarray) -> Traffic:
    texts = [t.texts[i] for i in keep] if t.texts is not None else None
    return Traffic(t.queries[keep], t.top[keep], t.scores[keep], t.docs, texts, raw_queries=t.raw_queries[keep], raw_docs=t.raw_docs)


def candidate_adapters(current: tuple[Any, Any], side: str, dim: int, rank: int, seed: int):
    """Adapters to train this cycle: a warm-started clone of the current version's adapter
    on each side the targets move (anchored at its weights, so the regulariser keeps it near
    what is served), a fresh identity adapter where none exists; sides the targets do not
    move keep the current adapter object unchanged (no re-materialisation needed)."""
    import torch

    torch.manual_seed(seed)
    moves_q, moves_d = side in ("query", "both"), side in ("doc", "both")
    cur_q, cur_d = current
    if moves_q and moves_d and cur_q is None and cur_d is None:
        shared = ResidualAdapter(dim, rank)  # a symmetric correction: one map for both sides
        return shared, shared
    if cur_q is not None and cur_q is cur_d and moves_q and moves_d:
        shared = cur_q.clone()
        return shared, shared
    q = (cur_q.clone() if cur_q is not None else ResidualAdapter(dim, rank)) if moves_q else cur_q
    d = (cur_d.clone() if cur_d is not None else ResidualAdapter(dim, rank)) if moves_d else cur_d
    return q, d


def label_free_gate(ctx: AdaptationContext, texts: list[str | None], vectors: np.ndarray, doc_ids: list[str], *, teacher_docs: np.ndarray | None = None, trained: list[str | None] | None = None):
    """The gate used without a labelled dev split (:class:`~antigravity.adaptation.gates.JudgeGate` or,
    with ``gate.judge = "proxy"``, :class:`~antigravity.adaptation.gates.ProxyGate`) for held-out traffic
    ``texts`` / raw ``vectors (m, d)``. A teacher judge that fails falls back to BM25 (the
    failure is counted in ``stats()["teacher_failures"]``); held-out queries without text
    cannot be judged and are dropped. ``teacher_docs``: teacher vectors of ``doc_ids`` when
    the caller already has them.

    With fewer than ``gate.min_judged_texts`` held-out texts the judge gate also judges
    label-free pseudo-queries from the corpus (:func:`~antigravity.adaptation.gates.top_up_judged`;
    seeded by ``adaptation.seed``; never a ``trained`` text or a near-duplicate of one, never
    an excluded text; judged only — the cycle has already trained). The counts are in the
    decision's ``metrics["judged_texts"]`` (``traffic``, ``pseudo``)."""
    g = ctx.settings.gate
    name = resolve_judge(ctx.settings)
    if name == "proxy":
        return ProxyGate(vectors)
    keep = [i for i, t in enumerate(texts) if t]
    texts = [texts[i] for i in keep]
    vectors = vectors[keep]
    pseudo, known = top_up_judged(ctx, texts, trained or [], seed=ctx.settings.adaptation.seed, with_sources=True)
    n_traffic = len(texts)
    if pseudo:
        texts = [*texts, *pseudo]
        vectors = np.concatenate([np.asarray(vectors, np.float32), np.asarray(ctx.encoder.encode(pseudo), np.float32)])
    kwargs = {"min_queries": g.min_queries, "min_gain": g.min_gain, "alpha": g.alpha, "judged_texts": {"traffic": n_traffic, "pseudo": len(pseudo)}}
    if getattr(g, "diagnostics", False):
        kwargs |= diagnostic_kwargs(ctx, doc_ids, n_traffic, known, with_bm25=name == "teacher")
    if name == "teacher":
        from antigravity.core.errors import failure_kind

        try:
            helper = ctx.teacher()
            Td = teacher_docs if teacher_docs is not None else helper.get_teacher_embeddings(ctx.document_texts(doc_ids))
            judge = teacher_judge(ctx, doc_ids, Td, lambda t: helper.get_teacher_embeddings(t, cache=False))
            gate = JudgeGate.build(judge, texts, vectors, doc_ids, **kwargs)
            if not ctx.settings.keeps_teacher:
                helper.release()  # hybrid keeps its teacher between cycles; other modes do not
            return gate
        except (TeacherError, DocumentError, ConfigurationError, ValueError) as exc:  # no usable teacher: BM25 judges
            ctx.report_failure("judge_" + failure_kind(exc), exc)
    try:
        judge = bm25_judge(ctx, doc_ids)
    except DocumentError as exc:  # no stored text to judge with
        return UnavailableGate("judge_bm25_ndcg@10", f"no judge available ({exc})")
    if "also_judges" in kwargs:  # a teacher that failed left BM25 to judge: not also beside itself
        kwargs["also_judges"] = [j for j in kwargs["also_judges"] if j is not judge]
    return JudgeGate.build(judge, texts, vectors, doc_ids, **kwargs)


def run_cycle(ctx: AdaptationContext, teacher_guidance: Callable | None = None) -> AdaptationReport:
    """One sedimentation cycle on ``ctx`` (see module doc): returns the report with the
    trained candidate; ``report.ok`` when the gate passed it. Never raises on a failed
    cycle: errors become a report that is not ok, and the current version keeps serving.

    Args:
        teacher_guidance: optional ``callable(traffic, targets) -> targets`` that blends
            teacher guidance into the homeostatic targets (hybrid mode).
    """
    s = ctx.settings.adaptation
    t0 = time.perf_counter()
    signal = get_signal(s.signal)
    n_signals = len(ctx.traffic)
    if n_signals == 0:
        msg = "no signals: no search traffic recorded since start; nothing to learn (no-op)"
        logger.info("sedimentation cycle skipped: %s", msg)
        return AdaptationReport(None, False, msg, signal=signal.name)
    doc_ids, D = ctx.doc_ids, ctx.raw_docs
    if len(doc_ids) == 0:
        return AdaptationReport(None, False, "no documents stored (no-op)", signal=signal.name, n_signals=n_signals)
    traffic = traffic_arrays(list(ctx.traffic), doc_ids, D, ctx.current)
    gate = ctx.validation
    held_texts: list[str] = []
    held_vecs = np.zeros((0, D.shape[1]), np.float32)
    trained_texts: list[str | None] = []
    if gate is None:  # label-free: judge held-out traffic that no adapter of this engine trains on
        texts = traffic.texts if traffic.texts is not None else [None] * len(traffic.queries)
        train, hold = split_held_out(texts, ctx.settings.gate.holdout_fraction)
        held_vecs = traffic.raw_queries[hold]
        held_texts = [texts[i] for i in hold]
        traffic = _subset(traffic, train)
        trained_texts = [texts[i] for i in train]
    report = AdaptationReport(None, False, "", signal=signal.name, n_signals=n_signals, gate=getattr(gate, "name", ""))
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
        q_ad, d_ad = candidate_adapters(ctx.current, side, D.shape[1], min(s.rank, D.shape[1]), s.seed)
        recipe = training_recipe(s, signal)
        res = fit_blend(
            q_ad if side in ("query", "both") else None, d_ad if side in ("doc", "both") else None,
            targets.vector if targets.vector is not None else targets.listwise, targets.teacher, D,
            teacher_weight=targets.teacher_weight, temperature=ctx.settings.teacher.temperature,
            weight_decay=s.weight_decay, seed=s.seed, **recipe,
        )
        report.loss_before, report.loss_after = res.loss_before, res.loss_after
        report.train_time_s = time.perf_counter() - t1
        served_d = d_ad.transform(D) if d_ad is not None else D
        report.drift = float(np.mean(np.sum(served_d * D, axis=1)))
        report.current, report.candidate = ctx.current, (q_ad, d_ad)
        if not ctx.settings.gate.enabled:
            decision = GateDecision(True, "gate disabled")
        else:
            try:
                if gate is None:
                    gate = label_free_gate(ctx, held_texts, held_vecs, doc_ids, trained=trained_texts)
                if isinstance(gate, DevSetGate):
                    gate.tolerance = ctx.settings.gate.tolerance
                decision = gate.decide(report.current, report.candidate, doc_ids, D, loss_before=res.loss_before, loss_after=res.loss_after)
            except Exception as exc:  # noqa: BLE001 - a gate that cannot judge rejects; a cycle never raises
                logger.warning("gate failed (%s: %s); the candidate is rejected", type(exc).__name__, exc)
                decision = GateDecision(False, f"gate failed ({type(exc).__name__}: {exc}); kept the current version")
            report.gate = getattr(gate, "name", "unavailable")
        report.gate_current, report.gate_candidate = decision.current, decision.candidate
        report.metrics["gate_metrics"] = decision.metrics
        report.ok, report.reason = decision.ok, decision.reason
    except AdaptationError as exc:
        report.reason = f"aborted: {exc}"
    report.time_s = time.perf_counter() - t0
    return report
