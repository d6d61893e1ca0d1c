"""Runs adaptation for an engine: builds the frozen context, asks the mode's strategy and
the adaptation code for a candidate, promotes it through the version manager, and applies
live settings changes — one run at a time."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Sequence

from antigravity.adaptation.context import AdaptationContext, AdaptationReport
from antigravity.core.threads import join
from antigravity.core.errors import AdaptationError, ConfigurationError, TeacherError, failure_kind
from antigravity.modes.strategies import get_mode
from antigravity.serving.checkpoints import CheckpointMeta, settings_hash
from antigravity.settings import Settings, changes, mask_url

logger = logging.getLogger("antigravity.engine")

#: settings that shape the encoder or the store: changing them needs a new engine
RESTART_KEYS = ("data_dir", "cache_dir", "student", "store")


class AdaptationRunner:
    """Cycles, offline pre-training, auto-cycles and live settings for one engine.

    Args:
        engine: the facade (read through its public parts: ``settings``, ``encoder``,
            ``collection``, ``versions``, ``traffic``, ``teacher``, ``counters``).
    """

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.lock = threading.Lock()  # one adaptation run (cycle, distillation, rollback, settings change) at a time
        self.validation: tuple[Any, list[str] | None] = (None, None)  # (dev gate, dev texts)
        self.excluded: frozenset[str] = frozenset()  # text_digest of texts adaptation must never use
        self.reports: list[AdaptationReport] = []
        self.pretrain_pending = False  # offline mode: pre-train once before the next cycle
        self._guidance_status: str | None = None  # hybrid cycle: "used" or "failed:<kind>"
        self._signals_at_last_cycle = 0
        self._auto_thread: threading.Thread | None = None

    def exclude(self, texts: Sequence[str]) -> None:
        """Texts adaptation must never use (e.g. a benchmark's evaluation queries): the
        label-free gate's pseudo-queries (``gate.min_judged_texts``) whose case- and
        whitespace-normalised form equals one are dropped. Only fingerprints are kept
        (:func:`~antigravity.adaptation.gates.text_digest`); replaces the previous set."""
        from antigravity.adaptation.gates import text_digest

        self.excluded = frozenset(text_digest(t) for t in texts if isinstance(t, str))

    def context(self) -> AdaptationContext:
        """A frozen view of the engine for one adaptation run."""
        e = self.engine
        doc_ids, D = e.collection.raw_matrix()
        cur = e.versions.served
        return AdaptationContext(e.settings, doc_ids, D, (cur.query_adapter, cur.doc_adapter), e.traffic.snapshot(), self.validation[0], self.validation[1],
                                 e.encoder, e.collection.document_fields, e.collection.document_texts, lambda: e.teacher.helper, e.teacher.source, e.counters.record_failure, self.excluded)

    def checkpoint_meta(self, metrics: dict[str, Any]) -> CheckpointMeta:
        """Metadata saved with a new checkpoint (:meth:`AdapterRegistry.save`)."""
        e, status = self.engine, self._guidance_status
        fallback = status.split(":", 1)[1] if status and status.startswith("failed:") and not metrics.get("teacher") else None
        return CheckpointMeta(
            parent=e.versions.served.version, mode=e.settings.mode, source=metrics.get("source", "sedimentation"),
            student={"name": e.encoder.name, "dim": int(e.encoder.dim)}, settings_hash=settings_hash(e.settings), metrics=metrics,
            teacher=None if fallback is not None else e.teacher.checkpoint_teacher(metrics, e.settings.keeps_teacher), teacher_fallback=fallback,
        )

    def promote(self, report: AdaptationReport) -> AdaptationReport:
        """Activate a candidate the gate passed; the reason gets ``promoted:``, ``rejected:``
        or ``aborted:`` (closed while waiting for searches)."""
        if report.candidate is None or report.reason.startswith("aborted"):
            return report
        if not report.ok:
            report.reason = "rejected: " + report.reason
            return report
        t0 = time.perf_counter()
        versions = self.engine.versions
        try:
            version = versions.next_version()
            q_ad, d_ad = report.candidate
            versions.activate(d_ad, q_ad, version=version, meta=report.checkpoint_metrics())  # raw read under the write lock
            report.version, report.promoted, report.reason = version, True, "promoted: " + report.reason
        except AdaptationError as exc:
            report.reason = f"aborted: {exc}"
        report.materialise_time_s = time.perf_counter() - t0
        report.time_s += report.materialise_time_s
        return report

    def run_cycle(self) -> AdaptationReport:
        """One sedimentation cycle (after offline mode's pending pre-training)."""
        from antigravity.adaptation.sedimentation import run_cycle

        if self.pretrain_pending:
            self._pretrain_before_cycle()
        counters = self.engine.counters
        with self.lock:
            self._signals_at_last_cycle = counters.get("signals_recorded")
            self._guidance_status = None
            try:
                ctx = self.context()
                report = self.promote(run_cycle(ctx, get_mode(ctx.settings).guide(ctx, self._set_status)))
            finally:
                self._guidance_status = None
        logger.info("sedimentation cycle: %s", report.reason)
        self.reports.append(report)
        counters.count("cycles_run")
        counters.count("cycles_promoted" if report.promoted else "cycles_rejected")
        return report

    def _set_status(self, status: str) -> None:
        self._guidance_status = status

    def _pretrain_before_cycle(self) -> None:
        """Offline mode's one-off pre-training on the traffic texts; when it cannot run yet
        (fewer than 2 texts) the reason is logged and counted, and it is retried next cycle."""
        try:
            logger.info("offline pre-training before the cycle: %s", self.pretrain(()).reason)
        except AdaptationError as exc:
            self.pretrain_pending = True
            self.engine.counters.count("pretraining_deferred")
            logger.warning("offline pre-training deferred: %s", exc)

    def pretrain(self, queries: Sequence[str], **kwargs: Any) -> AdaptationReport:
        """Offline distillation (whatever the mode); a teacher failure returns an unpromoted
        report and is counted. Raises ConfigurationError / AdaptationError (nothing changed)."""
        from antigravity.modes.strategies import OfflineMode

        with self.lock:
            self.pretrain_pending = False
            self.engine.counters.count("pretrainings_run")
            try:
                return OfflineMode().pretrain(self.context(), queries, promote=self.promote, **kwargs)
            except TeacherError as exc:  # fallback chain: offline -> baseline, never a crash
                self.engine.counters.record_failure(failure_kind(exc), exc)
                return AdaptationReport(None, False, f"teacher failed ({exc}); kept the current version (baseline)", source="offline_distillation")

    def train_on_feedback(self, **overrides: Any) -> AdaptationReport:
        """Train a candidate on the stored relevance feedback (``α·CE(feedback) + (1 − α)·KL(teacher)``),
        gate it on held-out feedback and serve it if it passes
        (:func:`antigravity.adaptation.feedback_training.run_feedback_training`).

        ``overrides``: ``alpha`` (default ``feedback.alpha``), ``temperature``
        (``teacher.temperature``), ``candidates`` (``feedback.candidates``), ``holdout_fraction``
        (``feedback.holdout_fraction``), ``propensity``, ``propensity_eta``, ``propensity_clip``
        (``feedback.*``: inverse-propensity weighting of clicks), ``seed`` (``adaptation.seed``), ``split_seed`` (None:
        the fixed hold-out hash; an int salts it — benchmarks), ``teacher`` (an object
        instead of the engine's), ``sources`` (feedback sources to read; default all),
        ``config`` (:class:`~antigravity.adaptation.feedback_training.FeedbackConfig`).
        Counted in ``stats()["feedback_trainings_run"]``. A teacher failure returns an
        unpromoted report (counted in ``stats()["teacher_failures"]``).

        Raises:
            ConfigurationError: an invalid value, an unknown keyword, or ``α < 1`` without a teacher.
            AdaptationError: fewer than 2 usable feedback queries (nothing changed).
        """
        from antigravity.adaptation.feedback_training import run_feedback_training

        e = self.engine
        known = {"alpha", "temperature", "candidates", "holdout_fraction", "seed", "split_seed", "teacher", "sources", "config", "propensity", "propensity_eta", "propensity_clip"}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigurationError(f"train_on_feedback: unknown argument(s) {unknown}; known: {sorted(known)}")
        with self.lock:
            s = e.settings
            kw = {"alpha": s.feedback.alpha, "temperature": s.teacher.temperature, "candidates": s.feedback.candidates,
                  "holdout_fraction": s.feedback.holdout_fraction, "seed": s.adaptation.seed, "propensity": s.feedback.propensity,
                  "propensity_eta": s.feedback.propensity_eta, "propensity_clip": s.feedback.propensity_clip, **overrides}
            sources = kw.pop("sources", None)
            e.counters.count("feedback_trainings_run")
            ctx = self.context()
            try:
                report = self.promote(run_feedback_training(ctx, e.feedback_store.queries(sources), **kw))
            except TeacherError as exc:  # the teacher failed: keep the served version, never a crash
                e.counters.record_failure(failure_kind(exc), exc)
                report = AdaptationReport(None, False, f"teacher failed ({exc}); kept the current version", source="feedback")
        logger.info("feedback training: %s", report.reason)
        e.counters.count("feedback_trainings_promoted" if report.promoted else "feedback_trainings_rejected")
        return report

    def maybe_auto_cycle(self) -> None:
        """Start a background cycle when ``adaptation.auto_cycle`` and enough new signals."""
        s, n = self.engine.settings.adaptation, self.engine.counters.get("signals_recorded")
        if not s.auto_cycle or n - self._signals_at_last_cycle < s.min_signals:
            return
        if self.lock.locked() or (self._auto_thread is not None and self._auto_thread.is_alive()):
            return
        self._signals_at_last_cycle = n
        self._auto_thread = threading.Thread(target=self._auto_cycle_worker, name="antigravity-sedimentation", daemon=True)
        self._auto_thread.start()

    def _auto_cycle_worker(self) -> None:
        """An exception is logged and counted (``auto_cycle_errors``); the served version stays."""
        try:
            self.engine.run_sedimentation_cycle()  # the public entry, as a caller would run it
            self.engine.counters.count("auto_cycles_run")
        except Exception as exc:  # noqa: BLE001 - a background thread has no caller to raise to
            self.engine.counters.count("auto_cycle_errors")
            logger.error("automatic sedimentation cycle failed (%s: %s); still serving version %d", type(exc).__name__, mask_url(str(exc)), self.engine.versions.served.version)

    def wait_for_auto_cycle(self, timeout: float | None = None) -> bool:
        """Wait for a running automatic cycle; True if none is running afterwards."""
        return join(self._auto_thread, timeout)

    def apply_settings(self, new: Settings) -> dict[str, tuple[Any, Any]]:
        """Apply validated settings to the running engine; ``{dotted key: (old, new)}``.
        Raises ConfigurationError for a key in :data:`RESTART_KEYS` (nothing changed)."""
        e = self.engine
        changed = changes(e.settings, new)
        frozen = [k for k in changed if k.split(".")[0] in RESTART_KEYS]
        if frozen:
            raise ConfigurationError(f"cannot change {', '.join(frozen)} on a running engine (they shape the stored vectors); build a new engine for them. Nothing was changed.")
        with self.lock:  # not during an adaptation run
            old_mode = e.settings.mode
            e.settings = new
            e.teacher.on_settings(new, changed)
            if "adaptation.max_signals" in changed:
                e.traffic.resize(new.adaptation.max_signals)
            if old_mode != new.mode:
                self.pretrain_pending = get_mode(new).pretrains
                e.counters.count("mode_switches")
            e.counters.count("settings_applied")
        if changed:
            logger.info("settings applied: %s", ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items() if "api_key" not in k))
        if old_mode != new.mode:
            logger.info("mode switched: %s -> %s (teacher weight %s)", old_mode, new.mode, new.teacher.weight)
        return changed



