"""What adaptation code is handed: a frozen snapshot of the engine's state, and one report
type for what it returns.

Adaptation (sedimentation cycles, offline distillation) reads the corpus, the traffic and
the served version through an :class:`AdaptationContext` the engine builds, trains a
candidate, gates it and returns an :class:`AdaptationReport`; it never numbers, saves or
activates a version (the serving layer's version manager does, on ``report.ok``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable, Sequence

import numpy as np


@dataclass
class TrafficRecord:
    """A served query kept for label-free signals: raw query vector ``(d,) float32``, its
    top-k doc ids and their cosine scores ``(k,) float32``, and its text when known."""

    query_vector: np.ndarray
    doc_ids: list[str]
    scores: np.ndarray
    text: str | None = None


@dataclass(frozen=True)
class AdaptationContext:
    """A read-only view of the engine for one adaptation run.

    Attributes:
        settings: the engine's :class:`~antigravity.settings.Settings` at the start of the run.
        doc_ids / raw_docs: every stored document id and its raw student vector ``(n, d) float32``.
        current: the served ``(query_adapter, doc_adapter)`` (``None`` = identity).
        traffic: the traffic buffer's records, oldest first.
        validation: a labelled dev gate (:class:`~antigravity.adaptation.gates.DevSetGate`) or ``None``.
        validation_texts: texts of the dev queries when the caller gave them.
        encoder: the student (``encode(texts) -> (n, d) float32``, ``dim``).
        document_fields: ``doc_id -> {"title", "text"}``; raises DocumentError for unknown ids.
        document_texts: ``doc_ids -> [title + " " + text]``; raises DocumentError when no text is stored.
        teacher: ``() -> TeacherDistillationHelper`` (lazy; raises ConfigurationError without a teacher).
        teacher_source: the teacher object given to the engine, if any (``None``: from settings).
        report_failure: ``(kind, exc) -> None`` counts a teacher failure in ``stats()``.
        excluded: fingerprints (:func:`~antigravity.adaptation.gates.text_digest`) of texts the
            adaptation must never use, e.g. a benchmark's evaluation queries; the label-free
            gate drops pseudo-queries that match one (the texts themselves are never handed over).
    """

    settings: Any
    doc_ids: list[str]
    raw_docs: np.ndarray
    current: tuple[Any, Any]
    traffic: Sequence[TrafficRecord]
    validation: Any
    validation_texts: list[str] | None
    encoder: Any
    document_fields: Callable[[str], dict[str, str]]
    document_texts: Callable[[Sequence[str]], list[str]]
    teacher: Callable[[], Any]
    teacher_source: Any
    report_failure: Callable[[str, BaseException], None]
    excluded: frozenset[str] = frozenset()

    def traffic_texts(self) -> list[str]:
        """Texts of the buffered traffic queries that have one."""
        return [r.text for r in self.traffic if r.text]


@dataclass
class AdaptationReport:
    """Outcome of one adaptation run (a sedimentation cycle or offline distillation).

    ``ok``: the gate passed the candidate; ``promoted``/``version`` are set by the engine once
    the version manager has activated it. Times in seconds; ``drift`` = mean cosine(raw,
    served) of documents under the candidate (1.0 = identity); gate scores are NDCG@10 on the
    dev split or against the label-free judge (:mod:`antigravity.adaptation.gates`).
    ``metrics`` holds everything else (distillation: texts, losses, alignment, gate metrics).
    ``current``/``candidate``: the ``(query, doc)`` adapters judged — the benchmark scores both
    to measure the gate's decisions.
    """

    version: int | None
    promoted: bool
    reason: str
    source: str = "sedimentation"
    ok: bool = False
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
    metrics: dict[str, Any] = field(default_factory=dict)
    current: tuple | None = field(default=None, repr=False)
    candidate: tuple | None = field(default=None, repr=False)
    #: extra checkpoint metadata (e.g. the teacher's name and dimension)
    checkpoint: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def extra(self) -> dict[str, Any]:
        """Alias of :attr:`metrics` (cycle reports called it ``extra``)."""
        return self.metrics

    def to_dict(self) -> dict[str, Any]:
        """Every field but the adapters and checkpoint extras, as plain values."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("current", "candidate", "checkpoint")}

    def checkpoint_metrics(self) -> dict[str, Any]:
        """What a promoted version's checkpoint records under ``metrics``."""
        if self.source == "sedimentation":
            return {"signal": self.signal, **{k: v for k, v in self.to_dict().items() if k not in ("metrics", "source", "ok")}}
        return {"source": self.source, **self.checkpoint, **{k: v for k, v in self.metrics.items() if isinstance(v, (int, float, str))}}
