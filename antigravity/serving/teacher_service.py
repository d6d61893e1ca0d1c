"""The engine's teacher at serving time: loaded lazily, released when a mode no longer needs
it, blended into rankings (serving fusion), and never a reason for a search or a cycle to
fail — every failure is counted and falls back."""

from __future__ import annotations

import collections
import threading
from typing import Any, Callable, Sequence

import numpy as np

from antigravity.core.documents import doc_text
from antigravity.core.errors import ConfigurationError, DocumentError, TeacherError, failure_kind
from antigravity.serving.counters import Counters

#: serving fusion keeps at most this many teacher document vectors (LRU): memory is bounded
#: (100k × 768-d float32 ≈ 300 MB) whatever the corpus size
MAX_FUSION_DOCS = 100_000

#: teacher settings whose change needs a new teacher
TEACHER_KEYS = ("teacher.name", "teacher.base_url", "teacher.api_key_env", "teacher.precision", "teacher.bf16", "teacher.batch_size", "teacher.timeout_s", "teacher.max_retries")


class TeacherService:
    """Owns the engine's :class:`~antigravity.adaptation.distillation.TeacherDistillationHelper`.

    Args:
        source: a teacher object given to the engine (``None``: from ``settings.teacher``).
        settings: ``() -> Settings`` (read live). student_dim: the student's dimension.
        counters: where failures are counted (``stats()["teacher_failures"]``).
    """

    def __init__(self, source: Any, settings: Callable[[], Any], student_dim: int, counters: Counters) -> None:
        self.source = source
        self._settings = settings
        self._student_dim = student_dim
        self._counters = counters
        self._helper = None
        self._fusion_lock = threading.Lock()
        self._doc_vectors: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()  # serving fusion: doc id -> teacher vector, LRU

    @property
    def helper(self):
        """The lazy helper (nothing is loaded until a hybrid cycle, a judge or fusion needs it).

        Raises:
            ConfigurationError: no teacher configured (``teacher.name`` / ``teacher.base_url``).
        """
        if self._helper is None:
            from antigravity.adaptation.distillation import TeacherDistillationHelper

            s = self._settings()
            if self.source is None and not (s.teacher.name or s.teacher.base_url):
                raise ConfigurationError("no teacher configured: set teacher.name or teacher.base_url")
            self._helper = TeacherDistillationHelper(self.source, student_dim=self._student_dim, cache_dir=s.resolved_cache_dir, settings=s.teacher)
        return self._helper

    @property
    def loaded(self) -> bool:
        """Whether the teacher's model or endpoint is loaded now."""
        return bool(self._helper is not None and self._helper.loaded)

    def record_failure(self, kind: str, exc: BaseException) -> None:
        """Count a teacher failure by ``kind``; logged once per kind (thread-safe)."""
        self._counters.record_failure(kind, exc)

    def release(self) -> None:
        """Free the teacher's memory (it is reloaded lazily when next needed)."""
        if self._helper is not None:
            self._helper.release()

    def on_settings(self, settings: Any, changed: dict[str, Any]) -> None:
        """A settings change: release the teacher unless hybrid keeps it; forget it (and its
        document vectors) when the teacher itself changed."""
        teacher_changed = any(k in changed for k in TEACHER_KEYS)
        if self._helper is not None and (not settings.keeps_teacher or teacher_changed):
            self._helper.release()
            if teacher_changed:
                self._helper = None
        if teacher_changed:
            self._doc_vectors = collections.OrderedDict()

    def forget_documents(self, doc_ids: Sequence[str]) -> None:
        """Drop cached teacher vectors of re-written documents."""
        for d in doc_ids:
            self._doc_vectors.pop(d, None)

    def clear_document_vectors(self) -> None:
        """Drop every cached teacher document vector (fusion re-encodes on demand)."""
        self._doc_vectors.clear()

    def fuse(self, texts: list[str], results: list, k: int, weight: float) -> list:
        """Serving-time fusion (opt-in, ``teacher.fusion_weight`` = λ): re-score each query's
        student candidates ``(doc_id, score, payload)`` with ``(1 − λ)·student_cos +
        λ·teacher_cos`` and keep the top ``k``. Teacher document vectors are computed once per
        document and kept in memory; the query is encoded on every search. Any failure
        returns the student's ranking (counted as ``fusion_<kind>``), never an error."""
        try:
            with self._fusion_lock:
                helper = self.helper
                tq = helper.get_teacher_embeddings(texts, cache=False)
                missing = list(dict.fromkeys(d for hits in results for d, _, _ in hits if d not in self._doc_vectors))
                if missing:
                    if not self._settings().store.store_text:
                        raise DocumentError("serving fusion needs document text in the payload (store.store_text = true)")
                    found = {d: p for hits in results for d, _, p in hits}
                    vecs = helper.get_teacher_embeddings([doc_text({"title": found[d].get("title", ""), "text": found[d].get("text", "")}) for d in missing])
                    self._doc_vectors.update(zip(missing, vecs))
                rows = [np.stack([self._doc_vectors[d] for d, _, _ in hits]) if hits else None for hits in results]
                for hits in results:  # most recently used last; the oldest beyond the bound go
                    for d, _, _ in hits:
                        self._doc_vectors.move_to_end(d)
                while len(self._doc_vectors) > MAX_FUSION_DOCS:
                    self._doc_vectors.popitem(last=False)
            fused = []
            for qv, hits, docs in zip(tq, results, rows):
                if not hits:
                    fused.append(hits)
                    continue
                tv = docs @ qv
                scores = [(1.0 - weight) * s + weight * float(t) for (_, s, _), t in zip(hits, tv)]
                order = np.argsort(-np.asarray(scores), kind="stable")[:k]
                fused.append([(hits[i][0], scores[i], hits[i][2]) for i in order])
            self._counters.count("fused_searches", len(texts))
            return fused
        except Exception as exc:  # noqa: BLE001 - fusion must never make search fail
            err = exc if isinstance(exc, TeacherError) else TeacherError(f"serving fusion failed: {exc}")
            self.record_failure("fusion_" + failure_kind(err), err)
            return [hits[:k] for hits in results]

    def checkpoint_teacher(self, metrics: dict[str, Any], keeps_teacher: bool) -> dict[str, Any] | None:
        """``{"name", "dim"}`` of the teacher behind a new checkpoint, or ``None``. Never
        resolves or probes a teacher (a dead endpoint must not block a save)."""
        helper = self._helper
        if not (metrics.get("teacher") or (keeps_teacher and helper is not None and helper.loaded)):
            return None
        src = helper.teacher_if_resolved if helper is not None else None
        dim = metrics.get("teacher_dim")
        if not dim and src is not None:
            dim = getattr(src, "known_dim", None)
        return {"name": metrics.get("teacher") or (getattr(src, "name", None) if src is not None else None), "dim": int(dim) if dim else None}
