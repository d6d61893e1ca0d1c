"""The feedback prior: an opt-in, bounded score boost at serving time for documents that
received positive feedback on similar queries. No training, no adapter.

For a query with raw student vector ``q``, every stored feedback query ``f`` with
``cos(q, f) ≥ feedback.prior_similarity`` (raw student vectors, unit norm) lends its
positively judged documents (grade ≥ 1) a boost of ``feedback.prior_boost``; a candidate's
score becomes ``cosine + boost`` (at most one boost per document, however many similar queries
judged it), and the candidates are re-sorted. Only the student's top
``max(k, feedback.prior_candidates)`` are re-ranked — a boosted document outside them is not
pulled in, so the prior never surfaces a document the student ranks far away, and deleted
documents (absent from the store) never appear.

This is the "boost documents relevant to a training query" baseline of the feedback
measurements (docs/feedback.md) made local: a fixed boost for documents judged relevant to
*any* training query helps queries whose relevant documents were judged (SciFact: 0.629 →
0.800) and hurts the others (0.676 → 0.602); requiring a *similar* query limits the boost to
queries that resemble judged ones. Qdrant's relevance-feedback query and "boost by past
clicks" rules in search engines are the same idea.

Memory: one ``(F, d) float32`` matrix of the feedback queries with a positive judgment
(``F`` ≤ ``feedback.max_rows``) and their document-id sets, rebuilt when feedback is written.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import numpy as np


class FeedbackPrior:
    """Re-rank search candidates with the feedback boost (see the module doc).

    Args:
        store: the :class:`~antigravity.serving.feedback.FeedbackStore` (its ``generation``
            changes on every write; the index is rebuilt then, on the next boosted search).
        encoder: the student (``encode`` of the feedback query texts, cached).
        settings: ``() -> Settings`` read live (``feedback.prior_*``).
    """

    def __init__(self, store: Any, encoder: Any, settings: Callable[[], Any]) -> None:
        self._store, self._encoder, self._settings = store, encoder, settings
        self._lock = threading.Lock()
        self._generation: int | None = None
        self._vectors = np.zeros((0, 0), np.float32)
        self._docs: list[frozenset[str]] = []
        self._by_text: dict[str, np.ndarray] = {}  # raw student vector of each stored feedback query text

    @property
    def enabled(self) -> bool:
        return self._settings().feedback.prior_boost > 0

    def _index(self) -> tuple[np.ndarray, list[frozenset[str]]]:
        """The feedback query matrix and document sets, rebuilt after a write; only query texts
        not seen before are encoded (a click does not re-encode every stored query)."""
        with self._lock:
            gen = self._store.generation
            if gen != self._generation:
                qs = [(q.query, frozenset(d for d, g in q.judgments.items() if g >= 1)) for q in self._store.queries()]
                qs = [(t, ds) for t, ds in qs if ds]
                new = list(dict.fromkeys(t for t, _ in qs if t not in self._by_text))
                if new:
                    self._by_text.update(zip(new, np.asarray(self._encoder.encode(new), np.float32)))
                self._by_text = {t: self._by_text[t] for t, _ in qs}  # forget queries no longer stored
                self._vectors = np.stack([self._by_text[t] for t, _ in qs]) if qs else np.zeros((0, 0), np.float32)
                self._docs = [ds for _, ds in qs]
                self._generation = gen
            return self._vectors, self._docs

    def boosted_documents(self, raw: np.ndarray) -> list[set[str]]:
        """Per query row of ``raw`` ``(m, d) float32``: the documents positively judged for a
        feedback query with cosine ≥ ``feedback.prior_similarity``."""
        F, docs = self._index()
        if not len(docs):
            return [set() for _ in range(len(raw))]
        sims = np.asarray(raw, np.float32) @ F.T
        threshold = self._settings().feedback.prior_similarity
        return [set().union(*(docs[j] for j in np.flatnonzero(row >= threshold))) for row in sims]

    def rerank(self, raw: np.ndarray, results: list[list[tuple[str, float, dict]]], k: int) -> tuple[list[list[tuple[str, float, dict]]], int]:
        """Add the boost to boosted candidates of each query, re-sort (score descending, then
        document id) and keep ``k``. Returns the new results and how many queries had at least
        one boosted candidate."""
        boost = float(self._settings().feedback.prior_boost)
        out, touched = [], 0
        for hits, boosted in zip(results, self.boosted_documents(raw)):
            if boosted and any(d in boosted for d, _, _ in hits):
                touched += 1
                hits = sorted(((d, s + boost if d in boosted else s, p) for d, s, p in hits), key=lambda h: (-h[1], h[0]))
            out.append(list(hits[:k]))
        return out, touched
