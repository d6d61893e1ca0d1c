"""Sedimentation cycles: turn accumulated traffic signals into a new adapter version, gate
it, and switch to it atomically — or keep the current one and say why.

A cycle:

1. snapshots the traffic buffer (raw query vectors + their top-k ids) and the raw document
   vectors (never the served ones: adapters never compound);
2. asks the configured signal definition (:mod:`antigravity.signals`) for targets;
   in hybrid mode blends them with teacher guidance (:mod:`antigravity.distillation`);
3. trains a fresh identity-initialised adapter (seeded);
4. runs the quality gate (:class:`DevSetGate` when a labelled dev split was given,
   else :class:`ProxyGate`);
5. if promoted, re-materialises ``adapter(raw)`` into the idle slot and flips the served
   version in one step (:meth:`AntigravityEngine.activate`).

Every cycle returns a :class:`CycleReport` and logs it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .adapter import ResidualAdapter
from .errors import AdaptationError
from .evaluation import evaluate
from .signals import Traffic, get_signal
from .training import fit_blend

if TYPE_CHECKING:  # pragma: no cover
    from .engine import AntigravityEngine

logger = logging.getLogger(__name__)


@dataclass
class CycleReport:
    """Outcome of one cycle. Times in seconds; ``drift`` = mean cosine(raw, served) of docs
    under the candidate (1.0 = identity); gate scores are NDCG@10 on the dev split, or the
    proxy score of :class:`ProxyGate`."""

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _top_rows(q: np.ndarray, D: np.ndarray, k: int) -> np.ndarray:
    s = q @ D.T
    k = min(k, D.shape[0])
    part = np.argpartition(-s, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, part, 1), axis=1)
    return np.take_along_axis(part, order, 1), np.take_along_axis(s, np.take_along_axis(part, order, 1), 1)


def _serve(q_adapter, d_adapter, Q: np.ndarray, D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (q_adapter.transform(Q) if q_adapter is not None else Q, d_adapter.transform(D) if d_adapter is not None else D)


class DevSetGate:
    """Labelled validation: exact NDCG@10 (pytrec_eval) of a candidate on a dev split.

    Args:
        qids: dev query ids; ``vectors`` their raw student vectors ``(m, d) float32``;
        qrels: ``{qid: {doc_id: rel}}`` (in the benchmark: a fixed slice of TRAIN qrels).
    """

    name = "dev_ndcg@10"

    def __init__(self, qids: list[str], vectors: np.ndarray, qrels: dict[str, dict[str, int]]) -> None:
        self.qids, self.vectors, self.qrels = list(qids), np.asarray(vectors, np.float32), qrels

    def score(self, q_adapter, d_adapter, doc_ids: list[str], D: np.ndarray) -> float:
        Q, Ds = _serve(q_adapter, d_adapter, self.vectors, D)
        rows, scores = _top_rows(Q, Ds, 100)
        run = {q: {doc_ids[r]: float(s) for r, s in zip(rr, ss)} for q, rr, ss in zip(self.qids, rows, scores)}
        return evaluate(self.qrels, run)["ndcg@10"]


class ProxyGate:
    """Label-free validation on held-out traffic queries (never trained on).

    Without labels no gain can be proven, so the proxy bounds harm: a candidate scores the
    mean overlap@10 between its top-10 and the frozen student's top-10 on held-out traffic;
    it is promoted only if that stays ``>= min_overlap`` *and* its training loss fell.
    """

    name = "proxy_overlap@10"

    def __init__(self, held_out: np.ndarray, min_overlap: float = 0.7) -> None:
        self.held_out = held_out
        self.min_overlap = min_overlap

    def score(self, q_adapter, d_adapter, doc_ids: list[str], D: np.ndarray) -> float:
        if len(self.held_out) == 0:
            return 1.0
        ref, _ = _top_rows(self.held_out, D, 10)
        Q, Ds = _serve(q_adapter, d_adapter, self.held_out, D)
        cand, _ = _top_rows(Q, Ds, 10)
        return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ref, cand)]))


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
    rng = np.random.Generator(np.random.PCG64(s.seed))
    gate = engine._validation
    if gate is None:  # hold out 20 % of traffic for the label-free proxy
        perm = rng.permutation(len(traffic.queries))
        n_hold = len(perm) // 5
        gate = ProxyGate(traffic.raw_queries[perm[:n_hold]])
        traffic = _subset(traffic, np.sort(perm[n_hold:]))
    report = CycleReport(None, False, "", signal=signal.name, n_signals=n_signals, gate=gate.name)
    try:
        if not np.isfinite(D).all() or not np.isfinite(traffic.raw_queries).all():
            raise AdaptationError("non-finite raw vectors in store or traffic; cycle aborted")
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
        report.gate_current = gate.score(cur.query_adapter, cur.doc_adapter, doc_ids, D)
        report.gate_candidate = gate.score(q_ad, d_ad, doc_ids, D)
        tol = engine.settings.gate.tolerance
        if not engine.settings.gate.enabled:
            ok, why = True, "gate disabled"
        elif isinstance(gate, ProxyGate):
            ok = report.gate_candidate >= gate.min_overlap and res.loss_after < res.loss_before
            why = f"proxy overlap@10 {report.gate_candidate:.3f} (min {gate.min_overlap}), loss {res.loss_before:.4f} -> {res.loss_after:.4f}"
        else:
            ok = report.gate_candidate >= report.gate_current - tol
            why = f"{gate.name} {report.gate_current:.4f} -> {report.gate_candidate:.4f} (tolerance {tol})"
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


def benchmark_cycles(engine: "AntigravityEngine", data, qvecs: np.ndarray, cycles: int, seed: int) -> list[dict[str, Any]]:
    """The benchmark's cycles: for cycle c, search the c-th slice of the adaptation (TRAIN)
    query texts through the engine (recording signals), run a cycle gated on the dev slice
    of TRAIN qrels, then evaluate the frozen test queries."""
    from .benchmark import evaluate_engine

    adapt_texts = list(data.adapt_queries.values())
    adapt_vecs = engine.encoder.encode(adapt_texts)
    if data.dev_queries:
        dev_ids = list(data.dev_queries)
        engine.set_validation(dev_ids, engine.encoder.encode([data.dev_queries[q] for q in dev_ids]), data.dev_qrels)
    rows = []
    chunks = np.array_split(np.arange(len(adapt_texts)), cycles) if len(adapt_texts) else [np.arange(0)] * cycles
    for c, chunk in enumerate(chunks, 1):
        if len(chunk):
            engine.search_vectors(adapt_vecs[chunk], k=engine.settings.adaptation.signal_top_k, record=True, texts=[adapt_texts[i] for i in chunk])
        rep = engine.run_sedimentation_cycle()
        rows.append(evaluate_engine(engine, data, qvecs, c, {"sediment_time_s": rep.time_s, "gate": rep.reason, "promoted": rep.promoted, "adapter_version": engine.served_version.version}))
    return rows
