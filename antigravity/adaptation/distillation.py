"""Teacher distillation: :class:`TeacherDistillationHelper`, offline pre-training of the
adapter (``engine.run_offline_distillation()``), and teacher guidance for hybrid cycles.

Offline distillation transfers the teacher's *ranking behaviour on this corpus* (not its
coordinates): for label-free distillation queries (traffic / train query texts and
pseudo-queries made from the corpus: titles, sentences), the teacher scores candidate
documents and the adapter learns to reproduce that distribution,

    loss = α·hard + (1 − α)·T²·KL(softmax(s_teacher/T) ‖ softmax(s_student/T))

(Hinton et al. 2015; listwise ranking distillation). ``hard`` is a cross-entropy on
labelled feedback when the caller has any (α = 0 otherwise).

Stages (each a small function, events sent to logging and an optional callback):
init teacher → build distillation set → teacher inference → train → apply → log metrics
→ release teacher (also when a stage fails).
"""

from __future__ import annotations

import dataclasses

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from antigravity.adaptation.adapter import ResidualAdapter
from antigravity.adaptation.corpus_queries import pseudo_queries
from antigravity.adaptation.context import AdaptationContext, AdaptationReport
from antigravity.core.errors import (
    AdaptationError, ConfigurationError, DocumentError, ModelLoadError, ModelNotFoundError, TeacherAlignmentError, TeacherDimensionError,
    TeacherError, TeacherLoadError, TeacherRuntimeError, failure_kind,
)
from antigravity.adaptation.gates import DevSetGate, JudgeGate, ProxyGate, bm25_judge, diagnostic_kwargs, fused_teacher_scores, is_stopping_half, lexical_rows, resolve_judge, split_held_out, teacher_judge, top_up_judged
from antigravity.teacher import Alignment, TeacherSource, resolve_teacher, validate_output
from antigravity.adaptation.training import ListwiseTargets, fit_listwise

logger = logging.getLogger(__name__)
Callback = Callable[[str, dict[str, Any]], None]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def validate_teacher_weight(w: Any) -> float:
    """``teacher_weight`` must be a number in [0, 1]; raises :class:`ConfigurationError`."""
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not np.isfinite(w) or not 0.0 <= float(w) <= 1.0:
        raise ConfigurationError(f"teacher_weight = {w!r}: must be a number in [0, 1]")
    return float(w)


def validate_temperature(t: Any) -> float:
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not np.isfinite(t) or float(t) <= 0:
        raise ConfigurationError(f"temperature = {t!r}: must be > 0")
    return float(t)


class TeacherDistillationHelper:
    """Lazy access to a teacher and the operations distillation needs.

    Constructing it loads nothing; the teacher is resolved and loaded on first use and
    cached; :meth:`release` frees it.

    Args:
        source: teacher object, model name/path, or ``None`` to use ``settings.name``
            (see :func:`antigravity.teacher.resolve_teacher` for the order).
        student_dim: the student's dimension ``d_s`` (alignment target).
        cache_dir: model and embedding cache folder.
        settings: :class:`~antigravity.settings.TeacherSettings`.
    """

    def __init__(self, source: Any = None, *, student_dim: int, cache_dir, settings=None, callback: Callback | None = None) -> None:
        self._source = source if source is not None else (settings.name if settings is not None else None)
        self.student_dim = int(student_dim)
        self.cache_dir = cache_dir
        self.settings = settings
        self.callback = callback
        self._teacher: TeacherSource | None = None
        self.alignment: Alignment | None = None
        self.teacher_latency_ms: float | None = None

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def teacher(self) -> TeacherSource:
        """The resolved teacher (resolved on first access)."""
        if self._teacher is None:
            try:
                self._teacher = resolve_teacher(self._source, cache_dir=self.cache_dir, settings=self.settings)
            except (ModelNotFoundError, ModelLoadError) as exc:  # a missing teacher model is a teacher failure
                raise TeacherLoadError(f"teacher {self._source!r} could not be loaded: {exc}") from exc
        return self._teacher

    @property
    def teacher_if_resolved(self) -> TeacherSource | None:
        """The teacher if already resolved, else ``None`` (never resolves or probes one)."""
        return self._teacher

    @property
    def loaded(self) -> bool:
        return self._teacher is not None

    def release(self) -> None:
        """Free the teacher model / HTTP client. Safe to call repeatedly."""
        if self._teacher is not None:
            self._teacher.release()
            self._teacher = None
            import gc

            from antigravity.encoders.model import trim_heap

            gc.collect()
            trim_heap()

    # -- embeddings ---------------------------------------------------------------------
    def get_teacher_embeddings(self, texts: Sequence[str], show_progress: bool = False, *, cache: bool = True) -> np.ndarray:
        """Teacher vectors of ``texts``: ``(n, d_t) float32``, L2-normalised, batched, cached
        on disk for model teachers (``cache=False``: not cached, for query traffic). Records
        mean ``teacher_latency_ms`` per text of this call.

        Raises:
            TeacherError: the teacher failed (load error, endpoint down) or its answer is refused
                by :func:`antigravity.teacher.validate_output` (NaN, wrong shape, all-zero rows,
                one vector for every text).
        """
        texts = list(texts)
        t0 = time.perf_counter()
        teacher = self.teacher
        try:
            if not cache and hasattr(teacher, "encode_uncached"):
                out = teacher.encode_uncached(texts)
            else:
                out = teacher.encode(texts, show_progress=show_progress) if _takes_progress(teacher) else teacher.encode(texts)
        except TeacherError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise TeacherRuntimeError(f"teacher failed: {exc}") from exc
        out = validate_output(out, len(texts), None, "teacher", texts)  # any TeacherSource, checked alike
        self.teacher_latency_ms = 1000 * (time.perf_counter() - t0) / max(1, len(texts))
        return out

    def check_dimension_compatibility(self) -> dict[str, Any]:
        """``{"student_dim", "teacher_dim", "same_dim", "alignment_fitted", "alignment_method"}``.
        Different dimensions are fine: every use of teacher vectors goes through an alignment."""
        td = self.teacher.dim
        return {
            "student_dim": self.student_dim,
            "teacher_dim": int(td),
            "same_dim": int(td) == self.student_dim,
            "alignment_fitted": self.alignment is not None,
            "alignment_method": self.alignment.method if self.alignment else None,
        }

    def fit_alignment(self, teacher_vecs: np.ndarray, student_vecs: np.ndarray, method: str = "ridge") -> Alignment:
        """Fit teacher→student :class:`Alignment` on paired vectors of the same texts:
        ``teacher_vecs`` ``(n, d_t) float32``, ``student_vecs`` ``(n, d_s) float32``.

        Raises:
            TeacherError: a dimension differs from the teacher's (when loaded) or the student's.
        """
        teacher_dim = self._teacher.dim if self._teacher is not None else None  # do not load it just to check
        if teacher_dim is not None and teacher_vecs.shape[1] != teacher_dim:
            raise TeacherDimensionError(f"teacher vectors are {teacher_vecs.shape[1]}-d, the teacher makes {self.teacher.dim}-d")
        if student_vecs.shape[1] != self.student_dim:
            raise TeacherDimensionError(f"student vectors are {student_vecs.shape[1]}-d, expected {self.student_dim}-d")
        self.alignment = Alignment.fit(teacher_vecs, student_vecs, method)
        return self.alignment

    def generate_distillation_targets(self, texts: Sequence[str], current: np.ndarray, teacher_weight: float) -> np.ndarray:
        """Blended targets in the served (student) space:
        ``unit((1 − w)·current + w·align(teacher(texts)))``, ``(n, d_s) float32``.
        ``w = 0`` returns ``unit(current)`` without touching the teacher.

        Raises:
            ConfigurationError: ``w`` outside [0, 1]. TeacherError: no alignment fitted.
        """
        w = validate_teacher_weight(teacher_weight)
        current = np.asarray(current, np.float32)
        if w == 0.0:
            return _unit(current)
        if self.alignment is None:
            raise TeacherAlignmentError("no teacher→student alignment fitted: call fit_alignment first")
        t = self.alignment.map(self.get_teacher_embeddings(texts))
        return _unit((1 - w) * current + w * t)

    def compute_alignment_metric(
        self, student_q: np.ndarray, student_d: np.ndarray, teacher_q: np.ndarray, teacher_d: np.ndarray, k: int = 10
    ) -> dict[str, float]:
        """Agreement of student and teacher: ``mean_cosine`` between aligned teacher and
        student vectors of the same documents (NaN when no alignment is fitted), and
        ``overlap@k``: mean |top-k_student ∩ top-k_teacher| / k over the given queries."""
        s_top = np.argsort(-(student_q @ student_d.T), axis=1)[:, :k]
        t_top = np.argsort(-(teacher_q @ teacher_d.T), axis=1)[:, :k]
        overlap = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(s_top, t_top)]))
        cos = float("nan")
        if self.alignment is not None:
            cos = float(np.mean(np.sum(self.alignment.map(teacher_d) * _unit(student_d), axis=1)))
        return {"mean_cosine": cos, f"overlap@{k}": overlap}


def _takes_progress(teacher: Any) -> bool:
    import inspect

    try:
        return "show_progress" in inspect.signature(teacher.encode).parameters
    except (TypeError, ValueError):
        return False


# -- offline distillation ---------------------------------------------------------------


@dataclass
class DistillationConfig:
    """Offline distillation hyper-parameters. Defaults were picked on a dev slice of the
    SciFact TRAIN qrels (never test) for student paraphrase-MiniLM-L3-v2 / teacher
    all-MiniLM-L6-v2; the table of what was tried is in docs/distillation.md.

    side: ``both`` (separate query and document adapters), ``query``, ``doc`` or ``shared``.
    rank: adapter rank (``>= d`` means full ``d x d``). candidates: 0 = all documents,
    K > 0 = student top-K ∪ teacher top-K. identity_reg: ``λ·Σ‖M − M₀‖²_F``. Training stops
    after ``patience`` epochs without a dev improvement; the best epoch is kept. ``lr_grid``
    (non-empty, with a dev gate): one run per learning rate, the best on dev is kept.
    ``refit`` (with a dev gate given query texts): once the early-stopped run passes the gate,
    retrain from scratch on the distillation texts plus the dev query texts (no labels) for the
    chosen number of epochs and serve that (model selection then refit on train + dev; test is
    never involved). Measured on the quick pair: 0.5726 → 0.5849 (docs/distillation.md).
    """

    side: str = "both"
    rank: int = 4096
    temperature: float = 0.05
    candidates: int = 0
    epochs: int = 100
    lr: float = 1e-3
    lr_grid: tuple[float, ...] = ()
    batch_size: int = 128
    weight_decay: float = 0.0
    identity_reg: float = 1e-5
    n_titles: int = 0
    n_sentences: int = 0
    patience: int = 20
    refit: bool = False
    seed: int = 0


#: offline distillation's report (one result class for every adaptation run)
DistillationReport = AdaptationReport


def run_offline_distillation(
    ctx: AdaptationContext,
    queries: Sequence[str] = (),
    *,
    config: DistillationConfig | None = None,
    teacher: Any = None,
    callback: Callback | None = None,
    promote: Callable[[AdaptationReport], AdaptationReport] | None = None,
) -> AdaptationReport:
    """Pre-train an adapter from the teacher's rankings and gate it; the report carries the
    candidate (``report.ok``: the gate passed it; the engine then serves it atomically).

    Args:
        queries: label-free distillation query texts (e.g. train queries); the engine's
            recorded traffic texts are added. Never pass evaluation queries.
        config: :class:`DistillationConfig`; without it, the measured recipe with
            ``adaptation.seed`` and the ``teacher.`` settings ``distill_lr_grid``,
            ``distill_refit``, ``distill_patience`` and ``temperature``. The adapter is full
            rank whatever ``adaptation.rank`` says (that is the cycles' low-rank adapter; the
            full-rank recipe is the one measured in docs/distillation.md).
            teacher: overrides ``settings.teacher``.
        callback: ``callback(event, metrics)`` for each stage.
        promote: the engine's promotion (its version manager activates a candidate that
            passed the gate and fills ``version``/``promoted``), called before ``apply``.

    Raises:
        ConfigurationError: invalid temperature / teacher weight, or no teacher configured.
        AdaptationError: fewer than 2 distillation texts (nothing is changed).
    """
    settings = ctx.settings
    cfg = config or DistillationConfig(  # rank stays the measured full-rank recipe: adaptation.rank is the cycles' adapter
        seed=settings.adaptation.seed, lr_grid=tuple(settings.teacher.distill_lr_grid), refit=settings.teacher.distill_refit,
        patience=settings.teacher.distill_patience, temperature=settings.teacher.temperature,
    )
    validate_temperature(cfg.temperature)
    validate_teacher_weight(settings.teacher.weight)
    if teacher is None and ctx.teacher_source is None and not (settings.teacher.name or settings.teacher.base_url):
        raise ConfigurationError("offline distillation needs a teacher: set teacher.name or teacher.base_url")
    emit = _emitter(callback)
    t_start = time.perf_counter()
    helper = TeacherDistillationHelper(
        teacher if teacher is not None else ctx.teacher_source,
        student_dim=ctx.encoder.dim, cache_dir=settings.resolved_cache_dir, settings=settings.teacher, callback=callback,
    )
    metrics: dict[str, Any] = {}
    try:
        # 1. init teacher
        dims = helper.check_dimension_compatibility()
        emit("init_teacher", dims)
        # 2. distillation set
        doc_ids, D = ctx.doc_ids, ctx.raw_docs
        if len(doc_ids) < 2:
            raise AdaptationError(f"offline distillation needs >= 2 stored documents, got {len(doc_ids)}")
        texts = ctx.document_texts(doc_ids)
        q_texts = list(dict.fromkeys([*queries, *ctx.traffic_texts()]))
        if cfg.n_titles or cfg.n_sentences:
            q_texts += pseudo_queries({d: ctx.document_fields(d) for d in doc_ids}, cfg.n_titles, cfg.n_sentences, cfg.seed)
        q_texts = [t for t in dict.fromkeys(q_texts) if t.strip()]
        if len(q_texts) < 2:
            raise AdaptationError(f"need at least 2 distillation texts, got {len(q_texts)}; nothing changed")
        order = np.random.Generator(np.random.PCG64(cfg.seed)).permutation(len(q_texts))
        q_texts = [q_texts[i] for i in order]
        gate = ctx.validation  # labelled dev split, if the caller gave one
        held: list[str] = []
        if gate is None and settings.gate.enabled:  # label-free: judge held-out texts never trained on
            train, hold = split_held_out(q_texts, settings.gate.holdout_fraction)  # the same texts cycles hold out
            held, q_texts = [q_texts[i] for i in hold], [q_texts[i] for i in train]
            if len(q_texts) < 2:
                raise AdaptationError(f"need at least 2 distillation texts besides the {len(held)} held out for the gate, got {len(q_texts)}; nothing changed")
        emit("build_set", {"n_texts": len(q_texts), "n_held_out": len(held), "n_tokens": int(sum(len(t.split()) for t in q_texts))})
        metrics.update(n_texts=len(q_texts), n_held_out=len(held), n_tokens=int(sum(len(t.split()) for t in q_texts)))
        # 3. teacher inference
        t0 = time.perf_counter()
        Td = helper.get_teacher_embeddings(texts, show_progress=False)
        Tq = helper.get_teacher_embeddings(q_texts)
        metrics["teacher_latency_ms"] = helper.teacher_latency_ms
        metrics["teacher_encode_time_s"] = time.perf_counter() - t0
        Sq = ctx.encoder.encode(q_texts)
        emit("teacher_inference", {"teacher_encode_time_s": metrics["teacher_encode_time_s"]})
        helper.fit_alignment(Td, D)
        metrics["alignment"] = helper.compute_alignment_metric(Sq, D, Tq, Td)
        stop_gate = gate
        if gate is None and settings.gate.enabled:
            # half of the held-out texts pick the epoch, the other half judge the result
            # (each half topped up to gate.min_judged_texts with pseudo-queries of its own half, judged only)
            stop_gate = _label_free_distillation_gate(ctx, helper, [t for t in held if is_stopping_half(t)], doc_ids, Td, trained=q_texts, seed=cfg.seed, stopping_half=True)
            gate = _label_free_distillation_gate(ctx, helper, [t for t in held if not is_stopping_half(t)], doc_ids, Td, trained=q_texts, seed=cfg.seed, stopping_half=False)
            metrics["judged_texts"] = {"gate": getattr(gate, "judged_texts", None), "stopping": getattr(stop_gate, "judged_texts", None)}
        # 4. train (early stopping on dev NDCG@10, or on the judge's score of the stopping half)
        t1 = time.perf_counter()
        watch = gate if (gate is not stop_gate and getattr(settings.gate, "diagnostics", False) and hasattr(gate, "score")) else None
        lexical = lexical_rows(ctx, doc_ids, q_texts)  # teacher.lexical_fusion: BM25 rows the teacher's targets are fused with
        q_ad, d_ad, res = train_ranking_distillation(doc_ids, Sq, D, Tq, Td, cfg, emit, gate=stop_gate, watch=watch, lexical=lexical)
        metrics.update(distill_loss=res.loss_after, distill_loss_before=res.loss_before, loss_curve=res.curve, train_time_s=time.perf_counter() - t1)
        if getattr(res, "extra", None):
            metrics.update(lr=res.extra["lr"], best_epoch=res.extra["best_epoch"], dev_by_lr={str(k): v for k, v in res.extra["dev_by_lr"].items()})
            for key in ("stopping_curve", "watched_curve"):  # per epoch: the early-stopping score; with gate.diagnostics the deciding half's
                if res.extra.get(key):
                    metrics[key] = res.extra[key]
        # 5. gate and apply
        current, candidate = ctx.current, (q_ad, d_ad)
        if not settings.gate.enabled:
            ok, why = True, "gate disabled"
        else:
            if isinstance(gate, DevSetGate):
                gate.tolerance = settings.gate.tolerance
            decision = gate.decide(current, candidate, doc_ids, D, loss_before=res.loss_before, loss_after=res.loss_after)
            metrics.update(gate=gate.name, gate_current=decision.current, gate_candidate=decision.candidate, gate_metrics=decision.metrics)
            ok, why = decision.ok, decision.reason
        # 4b. refit: retrain from scratch on the distillation texts + the dev query texts
        # (unlabelled) for the dev-chosen epoch count; the gate above judged the honest run
        seen = set(q_texts)
        dev_texts = [t for t in dict.fromkeys(ctx.validation_texts or []) if t.strip() and t not in seen]
        if ok and cfg.refit and isinstance(gate, DevSetGate) and dev_texts and metrics.get("best_epoch", -1) >= 0:
            t2 = time.perf_counter()
            Sq2 = np.concatenate([Sq, ctx.encoder.encode(dev_texts)])
            Tq2 = np.concatenate([Tq, helper.get_teacher_embeddings(dev_texts)])
            refit_cfg = dataclasses.replace(cfg, epochs=int(metrics["best_epoch"]) + 1, lr=metrics.get("lr", cfg.lr))
            data2 = teacher_targets(Sq2, D, Tq2, Td, cfg.temperature, cfg.candidates, lexical_rows(ctx, doc_ids, [*q_texts, *dev_texts]))
            q2, d2, res2, _ = _train_one(doc_ids, D, data2, refit_cfg, refit_cfg.lr, emit)
            refit_dev = gate.score(q2, d2, doc_ids, D)  # optimistic: it saw the dev texts (no labels)
            metrics.update(refit_n_texts=len(q_texts) + len(dev_texts), refit_epochs=refit_cfg.epochs, refit_dev_ndcg_optimistic=refit_dev, refit_time_s=time.perf_counter() - t2)
            if refit_dev >= metrics["gate_candidate"] - settings.gate.tolerance:  # sanity: never serve a refit that lost
                q_ad, d_ad = q2, d2
                metrics["refit_served"] = True
                why += f"; refit on {metrics['refit_n_texts']} texts for {refit_cfg.epochs} epochs served"
            else:
                metrics["refit_served"] = False
                why += "; refit lost on dev, the gated run is served"
            emit("refit", {k: metrics[k] for k in ("refit_n_texts", "refit_epochs", "refit_dev_ndcg_optimistic", "refit_served")})
        checkpoint = {"teacher": helper.teacher.name, "teacher_dim": int(helper.teacher.dim)} if ok else {}
        metrics["pretraining_time_s"] = time.perf_counter() - t_start
        report = AdaptationReport(None, False, why, source="offline_distillation", ok=ok, metrics=metrics, current=current, candidate=(q_ad, d_ad), checkpoint=checkpoint)
        if promote is not None:
            report = promote(report)
        emit("apply", {"promoted": report.promoted, "version": report.version})
        emit("done", {k: v for k, v in metrics.items() if k != "loss_curve"})
        return report
    finally:
        helper.release()
        emit("release_teacher", {})


def _label_free_distillation_gate(
    ctx: AdaptationContext, helper: TeacherDistillationHelper, held: list[str], doc_ids: list[str], Td: np.ndarray,
    *, trained: Sequence[str] = (), seed: int = 0, stopping_half: bool | None = None,
):
    """Offline distillation's label-free gate on the ``held`` texts: the teacher itself judges
    (its top-10 over the corpus as graded pseudo-relevance), or BM25 / the proxy when
    ``gate.judge`` says so. See :mod:`antigravity.adaptation.gates`. A judge gate with fewer
    than ``gate.min_judged_texts`` held texts also judges pseudo-queries from the corpus
    (:func:`~antigravity.adaptation.gates.top_up_judged`, of the given ``stopping_half``, never
    a ``trained`` text nor a near-duplicate of one; judged only)."""
    g = ctx.settings.gate
    name = resolve_judge(ctx.settings)
    if g.judge == "auto":
        name = "teacher"  # offline distillation always has its teacher loaded
    if name == "proxy":
        return ProxyGate(ctx.encoder.encode(held) if held else np.zeros((0, ctx.encoder.dim), np.float32))
    pseudo, known = top_up_judged(ctx, held, trained, seed=seed, stopping_half=stopping_half, with_sources=True)
    texts = [*held, *pseudo]
    vecs = ctx.encoder.encode(texts) if texts else np.zeros((0, ctx.encoder.dim), np.float32)
    judge = teacher_judge(ctx, doc_ids, Td, helper.get_teacher_embeddings) if name == "teacher" else bm25_judge(ctx, doc_ids)
    extra = diagnostic_kwargs(ctx, doc_ids, len(held), known, with_bm25=name == "teacher") if getattr(g, "diagnostics", False) else {}
    return JudgeGate.build(
        judge, texts, vecs, doc_ids, min_queries=g.min_queries, min_gain=g.min_gain, alpha=g.alpha, judged_texts={"traffic": len(held), "pseudo": len(pseudo)}, **extra
    )


def _emitter(callback: Callback | None) -> Callback:
    def emit(event: str, data: dict[str, Any]) -> None:
        logger.info("offline distillation: %s %s", event, data)
        if callback is not None:
            try:
                callback(event, data)
            except Exception:  # noqa: BLE001 - a telemetry callback must not break training
                logger.exception("distillation callback failed on %s", event)

    return emit


def teacher_targets(Sq: np.ndarray, D: np.ndarray, Tq: np.ndarray, Td: np.ndarray, temperature: float, k: int, lexical: np.ndarray | None = None) -> ListwiseTargets:
    """Teacher score distributions over candidates: all documents (``k = 0``) or student
    top-k ∪ teacher top-k (padded with the next teacher-ranked documents to a fixed width).
    ``lexical`` (``(m, ≥1)`` BM25 rows per query, ``teacher.lexical_fusion``): the teacher's
    scores follow its reciprocal-rank fusion with BM25 (:func:`~antigravity.adaptation.gates.fused_teacher_scores`)."""
    ts = Tq @ Td.T
    if lexical is not None:
        ts = fused_teacher_scores(ts, lexical)
    if k <= 0 or k >= len(D):
        z = ts / temperature
        cand = None
    else:
        s_top = np.argsort(-(Sq @ D.T), axis=1)[:, :k]
        t_order = np.argsort(-ts, axis=1)
        cand = np.empty((len(Sq), 2 * k), np.int64)
        for i in range(len(Sq)):
            u = list(dict.fromkeys([*t_order[i, :k], *s_top[i]]))
            extra = (d for d in t_order[i, k:] if d not in set(u))
            while len(u) < 2 * k:
                u.append(next(extra))
            cand[i] = u
        z = np.take_along_axis(ts, cand, 1) / temperature
    P = np.exp(z - z.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    return ListwiseTargets(Sq, cand, P.astype(np.float32))


def train_ranking_distillation(doc_ids: list[str], Sq, D, Tq, Td, cfg: DistillationConfig, emit: Callback, *, gate=None, watch=None, lexical: np.ndarray | None = None):
    """Train query/doc adapters on teacher rankings with early stopping on the engine's dev
    gate (best epoch kept). With a dev gate and several ``cfg.lr_grid`` values, one run per
    learning rate is trained and the one with the best dev NDCG@10 is kept (dev split of the
    train qrels: never test). Returns ``(q_adapter, d_adapter, TrainResult)``; the result's
    ``extra`` holds ``lr`` (chosen), ``dev_by_lr``, ``best_epoch``, ``stopping_curve`` (the
    gate's score after each epoch) and, with a ``watch`` gate (diagnostics: the other held-out
    half), ``watched_curve`` — its score after each epoch, never used to stop."""
    lrs = tuple(cfg.lr_grid) if (cfg.lr_grid and gate is not None) else (cfg.lr,)
    data = teacher_targets(Sq, D, Tq, Td, cfg.temperature, cfg.candidates, lexical)
    best_run = None
    dev_by_lr = {}
    for lr in lrs:
        q_ad, d_ad, res, score = _train_one(doc_ids, D, data, cfg, lr, emit, gate=gate, watch=watch)
        dev_by_lr[lr] = score
        emit("train_run", {"lr": lr, "dev_ndcg@10": score})
        if best_run is None or score > best_run[3]:
            best_run = (q_ad, d_ad, res, score, lr)
    q_ad, d_ad, res, _, lr = best_run
    res.extra = {**res.extra, "lr": lr, "dev_by_lr": dev_by_lr}
    emit("train", {"lr": lr, "best_epoch": res.extra.get("best_epoch"), "distill_loss": res.loss_after})
    return q_ad, d_ad, res


def _train_one(doc_ids: list[str], D, data, cfg: DistillationConfig, lr: float, emit: Callback, *, gate=None, watch=None):
    import torch

    torch.manual_seed(cfg.seed)
    dim = D.shape[1]
    rank = min(cfg.rank, dim)
    if cfg.side == "shared":
        q_ad = d_ad = ResidualAdapter(dim, rank)
    else:
        q_ad = ResidualAdapter(dim, rank) if cfg.side in ("query", "both") else None
        d_ad = ResidualAdapter(dim, rank) if cfg.side in ("doc", "both") else None
    if q_ad is None and d_ad is None:
        raise ConfigurationError(f"distillation side = {cfg.side!r}: choose query, doc, both or shared")
    if not hasattr(gate, "score"):
        gate = None  # e.g. the proxy gate: nothing to stop on, all epochs run
    best = {"score": -1.0, "epoch": -1, "state": None}
    curve: list[float] = []
    watched: list[float] = []

    def snapshot():
        return [a.state_dict() if a is not None else None for a in (q_ad, d_ad)]

    def early_stop(epoch: int) -> bool:
        if gate is None:
            return False
        sc = gate.score(q_ad, d_ad, doc_ids, D)
        curve.append(float(sc))
        if watch is not None:
            watched.append(float(watch.score(q_ad, d_ad, doc_ids, D)))
        emit("epoch", {"epoch": epoch, "lr": lr, gate.name: sc})
        if sc > best["score"]:
            best.update(score=sc, epoch=epoch, state=[{k: v.clone() for k, v in s.items()} if s else None for s in snapshot()])
        return epoch - best["epoch"] >= cfg.patience

    res = fit_listwise(
        q_ad, d_ad, data, D, temperature=cfg.temperature, epochs=cfg.epochs, lr=lr, batch_size=cfg.batch_size,
        weight_decay=cfg.weight_decay, identity_reg=cfg.identity_reg, seed=cfg.seed, early_stop=early_stop,
    )
    if best["state"] is not None:
        for a, s in zip((q_ad, d_ad), best["state"]):
            if a is not None and s is not None:
                a.load_state_dict(s)
    res.extra = {"best_epoch": best["epoch"], "stopping_curve": curve, "watched_curve": watched}
    return q_ad, d_ad, res, best["score"]



def hybrid_guidance(ctx: AdaptationContext, traffic, targets, weight: float):
    """Add teacher rankings on the same traffic to a cycle's homeostatic ``targets``
    (``loss = (1 − w)·homeostatic + w·teacher KL``). Returns ``(targets, status)``:
    ``status`` is ``"used"`` or ``"failed:<kind>"``. Any teacher failure leaves ``targets``
    unchanged (baseline) and is reported through ``ctx.report_failure``."""
    from antigravity.adaptation.signals import Targets

    idx = [i for i, t in enumerate(traffic.texts or []) if t]
    if len(idx) < 2:
        ctx.report_failure("no_query_texts", TeacherError("hybrid needs traffic query texts (use search(), not search_vectors())", kind="no_query_texts"))
        return targets, "failed:no_query_texts"
    try:
        helper = ctx.teacher()
        Td = helper.get_teacher_embeddings(ctx.document_texts(ctx.doc_ids))
        Tq = helper.get_teacher_embeddings([traffic.texts[i] for i in idx])
        if Td.shape[1] != Tq.shape[1]:
            raise TeacherDimensionError(f"teacher returned {Td.shape[1]}-d document vectors but {Tq.shape[1]}-d query vectors")
    except (TeacherError, DocumentError, ConfigurationError) as exc:
        kind = failure_kind(exc)
        ctx.report_failure(kind, exc)
        return targets, f"failed:{kind}"
    # raw vectors: the candidate adapters (warm-started from the served ones) are applied to raw
    # inputs in training; served-space queries here would apply the query adapter twice
    lexical = lexical_rows(ctx, ctx.doc_ids, [traffic.texts[i] for i in idx])  # teacher.lexical_fusion
    data = teacher_targets(traffic.raw_queries[idx], traffic.raw_docs, Tq, Td, ctx.settings.teacher.temperature, 0, lexical)
    return Targets(targets.side, vector=targets.vector, listwise=targets.listwise, teacher=data, teacher_weight=weight), "used"
