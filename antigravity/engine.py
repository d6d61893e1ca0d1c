"""The engine facade: one object a search backend embeds.

    from antigravity import AntigravityEngine
    with AntigravityEngine(store__location=":memory:") as engine:
        engine.ingest([{"_id": "d1", "text": "..."}])
        hits = engine.search("query", k=10)
        engine.run_sedimentation_cycle()

It wires small parts together (:mod:`antigravity.serving`: documents, versions, traffic,
teacher service, counters; :mod:`antigravity.modes`: what a mode does) and hands adaptation
code (:mod:`antigravity.adaptation`) a frozen :class:`AdaptationContext`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from antigravity.adaptation.adapter import ResidualAdapter
from antigravity.adaptation.context import AdaptationContext, AdaptationReport
from antigravity.core.documents import validate_query_text
from antigravity.core.errors import AdaptationError, ConfigurationError, QueryError, StoreError, TeacherError, failure_kind
from antigravity.core.files import check_permissions, make_private_dir
from antigravity.encoders.model import Encoder
from antigravity.modes import get_mode
from antigravity.serving import integrity
from antigravity.serving.checkpoints import AdapterRegistry, registry_for, settings_hash
from antigravity.serving.collection import DocumentCollection
from antigravity.serving.counters import Counters
from antigravity.serving.teacher_service import TeacherService
from antigravity.serving.traffic import TrafficBuffer
from antigravity.serving.versions import ServedVersion, VersionManager
from antigravity.settings import Settings, changes, mask_url, settings_dict
from antigravity.stores.manifest import CollectionManifest, student_identity
from antigravity.stores.qdrant import QdrantStore

logger = logging.getLogger(__name__)
__all__ = ["AntigravityEngine", "SearchHit", "ServedVersion"]


@dataclass(frozen=True)
class SearchHit:
    """One search result: document id, cosine ``score`` in [-1, 1], stored ``payload``."""

    doc_id: str
    score: float
    payload: dict[str, Any] = field(default_factory=dict)


class AntigravityEngine:
    """Adaptive retrieval engine: a student encoder, a Qdrant store and an adapter.

    Construct from :class:`Settings`, keyword overrides (nested with ``__``, e.g.
    ``store__location=":memory:"``), or both (keywords win). Opening a persistent store checks
    it (:mod:`antigravity.serving.integrity`): damage is refused with a typed one-line error.

    Args:
        encoder / teacher: objects to use instead of the configured student / teacher.
        create: ``False`` for read-only use: a missing data folder or store is an error.
        reindex: drop the collection and move its adapters aside (a deliberate re-index).
        adopt: write a manifest for the running student for a collection that has none.

    Raises:
        ConfigurationError: invalid settings. StoreError: store unreachable/locked, or missing
        with ``create=False``. ManifestError: another student built the collection, or the
        store is damaged. CheckpointError: the active adapter is damaged or for another student.
    """

    def __init__(self, settings: Settings | None = None, *, encoder: Encoder | None = None, teacher: Any = None,
                 create: bool = True, reindex: bool = False, adopt: bool = False, **overrides: Any) -> None:
        s = Settings.load(**overrides) if settings is None else settings.with_overrides(**overrides) if overrides else settings
        self.settings = s
        self.encoder = encoder or Encoder(s.student.name, cache_dir=s.resolved_cache_dir, batch_size=s.student.batch_size, bf16=s.student.bf16, max_seq_length=s.student.max_seq_length)
        self.in_memory = not s.store.url and s.resolved_store_location == ":memory:"
        data_dir = Path(s.data_dir).expanduser()
        self.permission_warnings: list[str] = []
        if not self.in_memory:
            if not data_dir.is_dir():
                if not create:
                    raise StoreError(f"data folder {str(data_dir)!r} does not exist (mistyped --data-dir?); nothing was created")
                make_private_dir(data_dir)
            self.permission_warnings = check_permissions(data_dir)
        self.store = QdrantStore(
            s.resolved_store_location if not s.store.url else None, url=s.store.url, api_key=s.store.api_key.get_secret_value() if s.store.api_key else None,
            collection=s.store.collection, timeout_s=s.store.timeout_s, create=create,
            create_options={k: getattr(s.store, k) for k in ("shard_number", "replication_factor", "write_consistency_factor")},
        )
        self.permission_warnings += [w for w in self.store.permission_warnings if w not in self.permission_warnings]
        if s.adaptation.rank > self.encoder.dim:
            self.store.close()
            raise ConfigurationError(f"adaptation.rank = {s.adaptation.rank}: must be <= the student dimension {self.encoder.dim} ({self.encoder.name})")
        self.counters = Counters()
        self._closed = False
        self._cycle_lock = threading.Lock()  # one adaptation run (cycle, distillation, rollback, settings change) at a time
        self._signals_at_last_cycle = 0
        self._auto_thread: threading.Thread | None = None
        self._identity: dict[str, Any] | None = None
        self._validation: tuple[Any, list[str] | None] = (None, None)  # (dev gate, dev texts)
        self._guidance_status: str | None = None  # hybrid cycle: "used" or "failed:<kind>"
        self._pretrain_pending = False  # offline mode: pre-train once before the next cycle
        self._cycles: list[AdaptationReport] = []
        view: AdapterRegistry | None = None if self.in_memory else registry_for(s)  # also holds the manifest
        self.manifest = None if view is None else CollectionManifest(view.dir)
        self.adapters = registry_for(s) if s.adaptation.persist and view is not None else None
        write_lock = threading.RLock()
        self.teacher = TeacherService(teacher, lambda: self.settings, self.encoder.dim, self.counters)
        self.traffic = TrafficBuffer(s.adaptation.max_signals)
        self.versions = VersionManager(self.store, self.adapters, self.raw_matrix, self._checkpoint_meta, self.counters, write_lock)
        self.collection = DocumentCollection(self.store, self.encoder, self.manifest, lambda: self.student_identity, self._store_where,
                                             lambda: self.settings, self.versions.served_vectors, self.counters, write_lock, self.teacher.forget_documents)
        try:
            if reindex and view is not None:
                integrity.drop_for_reindex(self.store, view)
                self.counters.count("reindexed")
            if view is not None:
                integrity.check_on_open(store=self.store, manifest=self.manifest, view=view, versions=self.versions, encoder=self.encoder, identity=self.student_identity,
                                        where=self._store_where(), data_dir=s.data_dir, persist=self.adapters is not None, adopt=adopt, counters=self.counters)
        except BaseException:
            self.store.close()
            raise
        self._pretrain_pending = get_mode(s).pretrains and self.versions.served.version == 0

    @property
    def student_identity(self) -> dict[str, Any]:
        """The running student's identity (:func:`antigravity.stores.manifest.student_identity`)."""
        if self._identity is None:
            self._identity = student_identity(self.encoder)
        return self._identity

    def _store_where(self) -> str:
        return mask_url(self.settings.store.url) if self.settings.store.url else str(self.store.location)

    def __enter__(self) -> "AntigravityEngine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the store client and release the models; a promotion waiting for searches
        gives up (AdaptationError). Idempotent."""
        if not self._closed:
            self._closed = True
            self.versions.close()
            self.store.close()
            self.encoder.release()
            self.teacher.release()

    # -- documents (see DocumentCollection) ------------------------------------------------
    def ingest(self, documents: Iterable[Any], *, batch_size: int | None = None, show_progress: bool = False) -> int:
        """Embed and store documents (BEIR dicts ``{"_id", "title"?, "text", ...payload}`` or
        ``(id, text[, payload])`` tuples; see :mod:`antigravity.core.documents`); returns how many
        were written. All or nothing for what the engine can check: every document is
        validated and embedded before the first is written. An id already stored is replaced.
        Empty documents are stored and counted but never returned by a search.

        Raises:
            DocumentError: malformed document (names it). EmptyCorpusError: nothing given.
            ManifestError: the collection was built by another student. StoreError: write refused.
        """
        return self.collection.ingest(documents, batch_size=batch_size, show_progress=show_progress)

    def count(self) -> int:
        """Number of stored documents (empty documents included)."""
        return self.collection.count()

    def get(self, doc_id: Any) -> dict[str, Any] | None:
        """The stored payload (``title``, ``text``, extra keys) of ``doc_id``, or ``None``. Raises DocumentError."""
        return self.collection.get(doc_id)

    def raw_matrix(self) -> tuple[list[str], np.ndarray]:
        """All stored raw document vectors: ``(ids, (n, d) float32)`` (cached until the next ingest)."""
        return self.collection.raw_matrix()

    def document_fields(self, doc_id: str) -> dict[str, str]:
        """``{"title", "text"}`` of a stored document. Raises DocumentError."""
        return self.collection.document_fields(doc_id)

    def document_texts(self, doc_ids: Sequence[str]) -> list[str]:
        """Embedded text (``title + " " + text``) of stored documents. Raises DocumentError."""
        return self.collection.document_texts(doc_ids)

    # -- search --------------------------------------------------------------------------
    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Raw student vectors of ``queries``: ``(m, d) float32`` (not cached: traffic is unbounded)."""
        for i, q in enumerate(queries):
            validate_query_text(q, index=i)
        return self.encoder.encode_uncached(list(queries)) if queries else np.zeros((0, self.encoder.dim), np.float32)

    def search(self, query: str, k: int = 10, *, record: bool = True) -> list[SearchHit]:
        """Top-``k`` documents for ``query`` (``record``: keep it for label-free signals).

        Raises:
            QueryError: empty/non-string query, invalid Unicode, or ``k <= 0``.
        """
        return self.search_batch([query], k=k, record=record)[0]

    def search_batch(self, queries: Sequence[str], k: int = 10, *, record: bool = True) -> list[list[SearchHit]]:
        """:meth:`search` for several queries in one encoder pass; one hit list per query."""
        if isinstance(queries, str):
            raise QueryError("search_batch takes a list of queries, got a single string")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise QueryError(f"k must be an integer >= 1, got {k!r}")
        return self.search_vectors(self.encode_queries(list(queries)), k=k, record=record, texts=list(queries))

    def search_vectors(self, raw: np.ndarray, k: int = 10, *, record: bool = True, texts: Sequence[str] | None = None) -> list[list[SearchHit]]:
        """Search with raw student query vectors ``(m, d) float32``; ``texts`` (same order)
        are kept with the traffic and enable serving fusion. Raises QueryError."""
        raw = np.asarray(raw, dtype=np.float32)
        if raw.ndim != 2 or (self.store.dim is not None and raw.shape[1] != self.store.dim):
            raise QueryError(f"query vectors must have shape (m, {self.store.dim}), got {raw.shape}")
        if not np.isfinite(raw).all():
            raise QueryError("query vectors contain NaN or inf")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise QueryError(f"k must be an integer >= 1, got {k!r}")
        fusion = self.settings.teacher.fusion_weight if texts is not None else 0.0
        with self.versions.reading() as state:
            q = state.query_adapter.transform(raw) if state.query_adapter is not None else raw
            results = self.store.search(q, using=state.slot, k=max(k, self.settings.teacher.fusion_candidates) if fusion > 0 else k)
        if fusion > 0:
            results = self.teacher.fuse(list(texts), results, k, fusion)
        self.counters.count("queries_served", len(raw))
        if record:
            self.traffic.record(raw, results, texts, self.settings.adaptation.signal_top_k)
            self.counters.count("signals_recorded", len(raw))
            self._maybe_auto_cycle()
        return [[SearchHit(d, s, p) for d, s, p in hits] for hits in results]

    # -- versions (see VersionManager) ---------------------------------------------------
    @property
    def served_version(self) -> ServedVersion:
        """The adapter version answering searches now."""
        return self.versions.served

    def activate(self, doc_adapter: ResidualAdapter | None, query_adapter: ResidualAdapter | None, *, version: int,
                 meta: dict[str, Any] | None = None, raw: tuple[list[str], np.ndarray] | None = None) -> ServedVersion:
        """Serve these adapters as ``version`` (:meth:`VersionManager.activate`: idle slot
        written, then one switch; searches never see a half-written slot). Raises AdaptationError."""
        return self.versions.activate(doc_adapter, query_adapter, version=version, meta=meta, raw=raw)

    def rollback(self, version: int | None = None) -> ServedVersion:
        """Serve ``version`` again, or the one before the current (0 = frozen student).
        Raises AdaptationError (unknown version) or CheckpointError (damaged checkpoint)."""
        with self._cycle_lock:
            return self.versions.rollback(version, student=self.encoder.name, dim=self.encoder.dim)

    def adapter_versions(self) -> list[int]:
        """Versions this engine can serve: in memory or saved on disk (0 = frozen student)."""
        return self.versions.versions()

    def _checkpoint_meta(self, metrics: dict[str, Any]) -> dict[str, Any]:
        status = self._guidance_status
        fallback = status.split(":", 1)[1] if status and status.startswith("failed:") and not metrics.get("teacher") else None
        out = {"parent": self.versions.served.version, "mode": self.settings.mode, "source": metrics.get("source", "sedimentation"),
               "student": {"name": self.encoder.name, "dim": int(self.encoder.dim)}, "settings_hash": settings_hash(self.settings), "metrics": metrics,
               "teacher": None if fallback is not None else self.teacher.checkpoint_teacher(metrics, self.settings.keeps_teacher)}
        return out if fallback is None else {**out, "teacher_fallback": fallback}

    # -- adaptation ----------------------------------------------------------------------
    @property
    def teacher_helper(self):
        """The lazy teacher helper (:class:`~antigravity.adaptation.distillation.TeacherDistillationHelper`)."""
        return self.teacher.helper

    def record_teacher_failure(self, kind: str, exc: BaseException) -> None:
        """Count a teacher failure by ``kind`` in ``stats()["teacher_failures"]`` (thread-safe)."""
        self.counters.record_failure(kind, exc)

    def set_validation(self, query_ids: Sequence[str], query_vectors: np.ndarray | None, qrels: dict[str, dict[str, int]], *, queries: Sequence[str] | None = None) -> None:
        """Give the gate a labelled dev split (raw vectors ``(m, d) float32`` or texts via
        ``queries=``, and ``qrels``). Never pass evaluation queries. Raises QueryError."""
        from antigravity.adaptation.gates import DevSetGate

        if query_vectors is None:
            if queries is None:
                raise QueryError("set_validation needs query_vectors or queries")
            query_vectors = self.encode_queries(list(queries))
        if len(query_ids) != len(query_vectors):
            raise QueryError(f"{len(query_ids)} query ids but {len(query_vectors)} vectors")
        missing = [q for q in query_ids if q not in qrels]
        if missing:
            raise QueryError(f"validation queries without qrels: {missing[:5]}")
        self._validation = (DevSetGate(list(query_ids), query_vectors, qrels), list(queries) if queries is not None else None)

    def adaptation_context(self) -> AdaptationContext:
        """A frozen view of the engine for one adaptation run (corpus, traffic, served version)."""
        doc_ids, D = self.raw_matrix()
        cur = self.versions.served
        return AdaptationContext(self.settings, doc_ids, D, (cur.query_adapter, cur.doc_adapter), self.traffic.snapshot(), self._validation[0], self._validation[1],
                                 self.encoder, self.document_fields, self.document_texts, lambda: self.teacher.helper, self.teacher.source, self.record_teacher_failure)

    def _promote(self, report: AdaptationReport) -> AdaptationReport:
        """Activate a candidate the gate passed; reasons get ``promoted:``/``rejected:``/``aborted:``."""
        if report.candidate is None or report.reason.startswith("aborted"):
            return report
        if not report.ok:
            report.reason = "rejected: " + report.reason
            return report
        t0 = time.perf_counter()
        try:
            version = self.versions.next_version()
            q_ad, d_ad = report.candidate
            self.versions.activate(d_ad, q_ad, version=version, meta=report.checkpoint_metrics(), raw=self.raw_matrix())
            report.version, report.promoted, report.reason = version, True, "promoted: " + report.reason
        except AdaptationError as exc:
            report.reason = f"aborted: {exc}"
        report.materialise_time_s = time.perf_counter() - t0
        report.time_s += report.materialise_time_s
        return report

    def run_sedimentation_cycle(self) -> AdaptationReport:
        """Train a candidate on the buffered traffic, gate it, and serve it if it passes
        (:func:`antigravity.adaptation.sedimentation.run_cycle`). In ``offline`` mode the
        first cycle after a switch runs the pre-training first (on the traffic texts). A
        failing cycle keeps the current version. One adaptation run at a time."""
        from antigravity.adaptation.sedimentation import run_cycle

        if self._pretrain_pending:
            self._pretrain_before_cycle()
        with self._cycle_lock:
            self._signals_at_last_cycle = self.counters.get("signals_recorded")
            self._guidance_status = None
            try:
                ctx = self.adaptation_context()
                report = self._promote(run_cycle(ctx, get_mode(self.settings).guide(ctx, self._set_guidance_status)))
            finally:
                self._guidance_status = None
        logger.info("sedimentation cycle: %s", report.reason)
        self._cycles.append(report)
        self.counters.count("cycles_run")
        self.counters.count("cycles_promoted" if report.promoted else "cycles_rejected")
        return report

    def _pretrain_before_cycle(self) -> None:
        """Offline mode's one-off pre-training on the traffic texts; when it cannot run yet
        (fewer than 2 texts) the reason is logged, counted and it is retried next cycle."""
        try:
            rep = self.run_offline_distillation()
            logger.info("offline pre-training before the cycle: %s", rep.reason)
        except AdaptationError as exc:
            self._pretrain_pending = True
            self.counters.count("pretraining_deferred")
            logger.warning("offline pre-training deferred: %s", exc)

    def _set_guidance_status(self, status: str) -> None:
        self._guidance_status = status

    def run_offline_distillation(self, queries: Sequence[str] = (), **kwargs: Any) -> AdaptationReport:
        """Pre-train the adapter on the teacher's rankings (:func:`antigravity.adaptation.distillation.run_offline_distillation`;
        the engine's traffic texts are added to ``queries``). A teacher failure returns an
        unpromoted report (counted in ``stats()["teacher_failures"]``) instead of raising.
        Raises ConfigurationError (no teacher, bad temperature) or AdaptationError (< 2 texts)."""
        from antigravity.adaptation.distillation import run_offline_distillation

        with self._cycle_lock:
            self._pretrain_pending = False
            try:
                return run_offline_distillation(self.adaptation_context(), queries, promote=self._promote, **kwargs)
            except TeacherError as exc:  # fallback chain: offline -> baseline, never a crash
                self.record_teacher_failure(failure_kind(exc), exc)
                return AdaptationReport(None, False, f"teacher failed ({exc}); kept the current version (baseline)", source="offline_distillation")

    @property
    def cycle_reports(self) -> list[AdaptationReport]:
        """Reports of every cycle run by this engine, oldest first."""
        return list(self._cycles)

    def _maybe_auto_cycle(self) -> None:
        s = self.settings.adaptation
        if not s.auto_cycle or self.counters.get("signals_recorded") - self._signals_at_last_cycle < s.min_signals:
            return
        if self._cycle_lock.locked() or (self._auto_thread is not None and self._auto_thread.is_alive()):
            return
        self._signals_at_last_cycle = self.counters.get("signals_recorded")
        self._auto_thread = threading.Thread(target=self._auto_cycle_worker, name="antigravity-sedimentation", daemon=True)
        self._auto_thread.start()

    def _auto_cycle_worker(self) -> None:
        """Background cycle (``adaptation.auto_cycle``): an exception is logged and counted
        in ``stats()["auto_cycle_errors"]``; the served version stays."""
        try:
            self.run_sedimentation_cycle()
            self.counters.count("auto_cycles_run")
        except Exception as exc:  # noqa: BLE001 - a background thread has no caller to raise to
            self.counters.count("auto_cycle_errors")
            logger.error("automatic sedimentation cycle failed (%s: %s); still serving version %d", type(exc).__name__, mask_url(str(exc)), self.versions.served.version)

    def wait_for_auto_cycle(self, timeout: float | None = None) -> bool:
        """Wait for a running automatic cycle; True if none is running afterwards."""
        t = self._auto_thread
        if t is not None:
            t.join(timeout)
            return not t.is_alive()
        return True

    # -- live settings ---------------------------------------------------------------------
    #: settings that shape the encoder or the store: changing them needs a new engine
    RESTART_KEYS = ("data_dir", "cache_dir", "student", "store")

    def set_mode(self, mode: str, *, teacher_weight: float | None = None) -> None:
        """Switch ``mode`` (``baseline`` | ``offline`` | ``hybrid``) on a running engine; no
        stored data changes. ``offline`` pre-trains once, at the next cycle (or call
        :meth:`run_offline_distillation`). Counted in ``stats()["mode_switches"]``.

        Raises:
            ConfigurationError: unknown mode, weight outside [0, 1], or no teacher configured.
        """
        new = settings_dict(self.settings)
        new["mode"] = mode
        if teacher_weight is not None:
            new["teacher"]["weight"] = teacher_weight
        self._apply_settings(self.settings.replaced(new))

    def reload_settings(self, config_file: str | None = None, **overrides: Any) -> dict[str, tuple[Any, Any]]:
        """Re-read settings (arguments > environment > config file > defaults) and apply
        ``mode``, ``teacher.*``, ``adaptation.*``, ``gate.*``, ``benchmark.*`` at once.
        Returns ``{dotted key: (old, new)}``. Raises ConfigurationError (invalid value, or a
        change to ``student``/``store``/``data_dir``/``cache_dir``: nothing changed)."""
        path = config_file or self.settings._config_file
        return self._apply_settings(Settings.load(path, **{**self.settings._overrides, **overrides}))

    def _apply_settings(self, new: Settings) -> dict[str, tuple[Any, Any]]:
        changed = changes(self.settings, new)
        frozen = [k for k in changed if k.split(".")[0] in self.RESTART_KEYS]
        if frozen:
            raise ConfigurationError(f"cannot change {', '.join(frozen)} on a running engine (they shape the stored vectors); build a new engine for them. Nothing was changed.")
        with self._cycle_lock:  # not during an adaptation run
            old_mode = self.settings.mode
            self.settings = new
            self.teacher.on_settings(new, changed)
            if "adaptation.max_signals" in changed:
                self.traffic.resize(new.adaptation.max_signals)
            if old_mode != new.mode:
                self._pretrain_pending = get_mode(new).pretrains
                self.counters.count("mode_switches")
            self.counters.count("settings_applied")
        if changed:
            logger.info("settings applied: %s", ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items() if "api_key" not in k))
        if old_mode != new.mode:
            logger.info("mode switched: %s -> %s (teacher weight %s)", old_mode, new.mode, new.teacher.weight)
        return changed

    def stats(self) -> dict[str, Any]:
        """Counters and the served state: documents, queries, version, mode, traffic size."""
        served = self.versions.served
        return {
            **self.counters.snapshot(), "mode": self.settings.mode, "documents": self.count(), "adapter_version": served.version,
            "served_slot": served.slot, "traffic_buffered": len(self.traffic), "adapter_versions": self.adapter_versions(),
            "adapters_dir": str(self.adapters.dir) if self.adapters is not None else None, "student": self.encoder.name,
            "teacher_loaded": self.teacher.loaded, "empty_documents": self.store.n_empty, "permission_warnings": len(self.permission_warnings),
        }
