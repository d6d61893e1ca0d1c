"""The engine facade a search backend embeds: it wires the serving parts (documents, versions,
traffic, teacher, counters, search, index policy, feedback) and the mode runner together and
delegates to them (``docs/architecture.md``). Usage: README, "Embedding the engine"."""

from __future__ import annotations

import logging
import threading
from typing import Any, Iterable, Sequence

import numpy as np

from antigravity.adaptation.adapter import ResidualAdapter
from antigravity.adaptation.context import AdaptationContext, AdaptationReport
from antigravity.core.errors import ConfigurationError, QueryError
from antigravity.encoders.model import Encoder
from antigravity.modes import get_mode
from antigravity.modes.runner import AdaptationRunner
from antigravity.serving import integrity
from antigravity.serving.checkpoints import AdapterRegistry, registry_for
from antigravity.serving.collection import DocumentCollection
from antigravity.serving.counters import Counters
from antigravity.serving.feedback import FeedbackStore, feedback_path
from antigravity.serving.feedback_prior import FeedbackPrior
from antigravity.serving.indexing import Indexer
from antigravity.serving.teacher_service import TeacherService
from antigravity.serving.search import SearchHit, Searcher
from antigravity.serving.traffic import TrafficBuffer
from antigravity.serving.versions import ServedVersion, VersionManager
from antigravity.settings import Settings, mask_url, settings_dict
from antigravity.stores.manifest import CollectionManifest, student_identity

logger = logging.getLogger(__name__)
__all__ = ["AntigravityEngine", "SearchHit", "ServedVersion"]


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
        if s.adaptation.rank > self.encoder.dim:
            raise ConfigurationError(f"adaptation.rank = {s.adaptation.rank}: must be <= the student dimension {self.encoder.dim} ({self.encoder.name})")
        self._identity: dict[str, Any] | None = None
        view: AdapterRegistry | None = None if not s.store.url and s.resolved_store_location == ":memory:" else registry_for(s)  # also holds the manifest
        self.manifest = None if view is None else CollectionManifest(view.dir)
        if self.manifest is not None and not reindex and self.manifest.exists():  # another student's collection: refused before any store file is opened
            integrity.precheck(self.manifest, registry_for(s) if s.adaptation.persist else None, self.encoder, self.student_identity, s.store.collection, s.data_dir)
        self.store, self.in_memory, self.permission_warnings = integrity.open_store(s, create=create)
        self.counters = Counters()
        self._closed = False
        self.runner = AdaptationRunner(self)
        self.adapters = registry_for(s) if s.adaptation.persist and view is not None else None
        write_lock = threading.RLock()
        self.indexer = Indexer(self.store, lambda: self.settings, self.counters)
        self.teacher = TeacherService(teacher, lambda: self.settings, self.encoder.dim, self.counters)
        self.traffic = TrafficBuffer(s.adaptation.max_signals)
        self.versions = VersionManager(self.store, self.adapters, self.runner.checkpoint_meta, self.counters, write_lock, self.indexer.after_write)
        self.feedback_store = FeedbackStore(None if self.in_memory else feedback_path(s.data_dir, s.store.collection), lambda: self.settings, lambda ids: set(self.store.retrieve(ids)), collection=s.store.collection)
        self.collection = DocumentCollection(self.store, self.encoder, self.manifest, lambda: self.student_identity, self._store_where,
                                             lambda: self.settings, self.versions.served_vectors, self.counters, write_lock, self.teacher.forget_documents)
        self.collection.backend = integrity.backend_of(s)
        self.searcher = Searcher(self.encoder, self.store, self.versions, self.teacher, self.traffic, self.counters, lambda: self.settings, self.runner.maybe_auto_cycle, prior=FeedbackPrior(self.feedback_store, self.encoder, lambda: self.settings), check_filter=self.collection.check_filter)
        try:
            if reindex and view is not None:
                integrity.drop_for_reindex(self.store, view)
                self.counters.count("reindexed")
            if view is not None:
                integrity.check_on_open(store=self.store, manifest=self.manifest, view=view, versions=self.versions, encoder=self.encoder, identity=self.student_identity,
                                        where=self._store_where(), data_dir=s.data_dir, persist=self.adapters is not None, adopt=adopt, counters=self.counters, backend=self.collection.backend)
        except BaseException:
            self.store.close()
            raise
        self.runner.pretrain_pending = get_mode(s).pretrains and self.versions.served.version == 0

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
            self.indexer.wait()  # never close the store under a running optimize
            self.store.close()
            self.encoder.release()
            self.teacher.release()
            self.feedback_store.close()

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
        try:
            return self.collection.ingest(documents, batch_size=batch_size, show_progress=show_progress)
        finally:  # what was written is indexed; an index failure never hides the ingest's result or error
            self.indexer.after_write_counted()

    def optimize(self) -> float:
        """Build the HNSW index of the served slots now (``antigravity index`` does this;
        otherwise it runs in the background above ``store.index_threshold`` documents after
        an ingest or a promotion). Returns seconds taken. Raises StoreError."""
        self.indexer.wait()
        return self.indexer.optimize()

    def count(self) -> int:
        """Number of stored documents (empty documents included)."""
        return self.collection.count()

    def get(self, doc_ids: Any, *, with_vectors: bool = False) -> Any:
        """Stored documents. One id: its payload (``title``, ``text``, extra keys) or ``None``;
        a list: ``{id: payload}`` of those found. ``with_vectors``: each record is
        ``{"payload", "vectors": {"raw", "served"}}`` with ``(d,) float32`` vectors (``served``:
        under the version answering searches now). Raises DocumentError for an invalid id."""
        return self.collection.get(doc_ids, with_vectors=with_vectors, served_slot=self.versions.served.slot)

    def delete(self, doc_ids: Sequence[Any]) -> int:
        """Delete documents by id from every served version at once; returns how many existed.
        Unknown ids are ignored; survives restart. Raises DocumentError (invalid id, or a single
        string instead of a list) or StoreError (nothing deleted)."""
        return self.collection.delete(doc_ids)

    def raw_matrix(self) -> tuple[list[str], np.ndarray]:
        """All stored raw document vectors: ``(ids, (n, d) float32)`` (cached until the next ingest)."""
        return self.collection.raw_matrix()

    def document_fields(self, doc_id: str) -> dict[str, str]:
        """``{"title", "text"}`` of a stored document. Raises DocumentError."""
        return self.collection.document_fields(doc_id)

    def document_texts(self, doc_ids: Sequence[str]) -> list[str]:
        """Embedded text (``title + " " + text``) of stored documents. Raises DocumentError."""
        return self.collection.document_texts(doc_ids)

    # -- search (see Searcher) -------------------------------------------------------------
    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Raw student vectors of ``queries``: ``(m, d) float32`` (not cached). Raises QueryError."""
        return self.searcher.encode_queries(queries)

    def search(self, query: str, k: int = 10, *, record: bool = True, filter: Any = None) -> list[SearchHit]:
        """Top-``k`` documents for ``query``. ``record``: keep it for label-free signals;
        ``filter``: payload conditions, ``{"field": value | [values] | {"gte": .., "lte": ..}}``
        or a ``qdrant_client.models.Filter`` (filtered searches are not recorded).
        Raises QueryError: empty/non-string query, invalid Unicode, ``k <= 0``, or a malformed filter."""
        return self.searcher.search_texts([query], k, record, filter)[0]

    def search_batch(self, queries: Sequence[str], k: int = 10, *, record: bool = True, filter: Any = None) -> list[list[SearchHit]]:
        """:meth:`search` for several queries in one encoder pass; one hit list per query."""
        return self.searcher.search_texts(queries, k, record, filter)

    def search_vectors(self, raw: np.ndarray, k: int = 10, *, record: bool = True, texts: Sequence[str] | None = None, filter: Any = None) -> list[list[SearchHit]]:
        """Search with raw student query vectors ``(m, d) float32``; ``texts`` (same order) are kept with the traffic and enable serving fusion. Raises QueryError."""
        return self.searcher.search_vectors(raw, k, record, texts, filter)

    # -- relevance feedback (see FeedbackStore) -----------------------------------------------
    def feedback(self, query: str, doc_id: str | int, relevance: int = 1, *, source: str = "click", rank: int | None = None, at: Any = None) -> None:
        """Record that stored document ``doc_id`` was relevant (``1..feedback.max_relevance``) or not (``0``) for ``query``
        (:mod:`antigravity.serving.feedback`); on disk when this returns. Raises FeedbackError or StoreError."""
        self.feedback_store.add(query, doc_id, relevance, source=source, rank=rank, at=at)

    def feedback_batch(self, rows: Iterable[dict[str, Any]]) -> int:
        """:meth:`feedback` for dicts with those keys, all or nothing (validated, then one transaction); returns rows stored."""
        return self.feedback_store.add_many(rows).stored

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
        with self.runner.lock:
            return self.versions.rollback(version, student=self.encoder.name, dim=self.encoder.dim)

    def adapter_versions(self) -> list[int]:
        """Versions this engine can serve: in memory or saved on disk (0 = frozen student)."""
        return self.versions.versions()

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
        self.runner.validation = (DevSetGate(list(query_ids), query_vectors, qrels), list(queries) if queries is not None else None)

    def adaptation_context(self) -> AdaptationContext:
        """A frozen view of the engine for one adaptation run (corpus, traffic, served version)."""
        return self.runner.context()

    def run_sedimentation_cycle(self) -> AdaptationReport:
        """Train a candidate on the buffered traffic, gate it, and serve it if it passes
        (:func:`antigravity.adaptation.sedimentation.run_cycle`). In ``offline`` mode the first
        cycle after a switch pre-trains first (on the traffic texts). A failing cycle keeps the
        current version. One adaptation run at a time."""
        return self.runner.run_cycle()

    def run_offline_distillation(self, queries: Sequence[str] = (), **kwargs: Any) -> AdaptationReport:
        """Pre-train on the teacher's rankings (:func:`antigravity.adaptation.distillation.run_offline_distillation`, traffic texts added); a teacher failure returns an unpromoted report (counted in ``stats()["teacher_failures"]``). Raises ConfigurationError (no teacher, bad temperature) or AdaptationError (< 2 texts)."""
        return self.runner.pretrain(queries, **kwargs)

    def train_on_feedback(self, **overrides: Any) -> AdaptationReport:
        """Train on the stored relevance feedback, gated on held-out feedback (:meth:`AdaptationRunner.train_on_feedback`)."""
        return self.runner.train_on_feedback(**overrides)

    @property
    def cycle_reports(self) -> list[AdaptationReport]:
        """Reports of every cycle run by this engine, oldest first."""
        return list(self.runner.reports)

    def wait_for_auto_cycle(self, timeout: float | None = None) -> bool:
        """Wait for a running automatic cycle; True if none is running afterwards."""
        return self.runner.wait_for_auto_cycle(timeout)

    # -- live settings ---------------------------------------------------------------------
    def set_mode(self, mode: str, *, teacher_weight: float | None = None) -> None:
        """Switch ``mode`` (``baseline`` | ``offline`` | ``hybrid``) on a running engine; no stored data changes. ``offline`` pre-trains once, at the next cycle
        (or call :meth:`run_offline_distillation`). Counted in ``stats()["mode_switches"]``. Raises ConfigurationError (unknown mode, weight outside [0, 1], no teacher)."""
        new = settings_dict(self.settings)
        new["mode"] = mode
        if teacher_weight is not None:
            new["teacher"]["weight"] = teacher_weight
        self.runner.apply_settings(self.settings.replaced(new))

    def reload_settings(self, config_file: str | None = None, **overrides: Any) -> dict[str, tuple[Any, Any]]:
        """Re-read settings (arguments > environment > config file > defaults) and apply
        ``mode``, ``teacher.*``, ``adaptation.*``, ``gate.*``, ``benchmark.*`` at once.
        Returns ``{dotted key: (old, new)}``. Raises ConfigurationError (invalid value, or a
        change to ``student``/``store``/``data_dir``/``cache_dir``: nothing changed)."""
        path = config_file or self.settings._config_file
        return self.runner.apply_settings(Settings.load(path, **{**self.settings._overrides, **overrides}))

    def stats(self) -> dict[str, Any]:
        """Counters and the served state: documents, queries, version, mode, traffic size, feedback rows."""
        served = self.versions.served
        return {
            **self.counters.snapshot(), "mode": self.settings.mode, "documents": self.count(), "adapter_version": served.version,
            "served_slot": served.slot, "traffic_buffered": len(self.traffic), "adapter_versions": self.adapter_versions(),
            "adapters_dir": str(self.adapters.dir) if self.adapters is not None else None, "student": self.encoder.name,
            "teacher_loaded": self.teacher.loaded, "empty_documents": self.store.n_empty, "permission_warnings": len(self.permission_warnings), "store_backend": self.collection.backend,
            "student_precision": getattr(self.encoder, "precision", "bf16" if getattr(self.encoder, "bf16", False) else "fp32"),  # as the manifest reads custom encoders
            "feedback": self.feedback_store.summary(),
        }
