"""The search path: validate, encode, read the served slot of one version, optionally fuse
teacher scores, record the query as traffic."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from antigravity.core.documents import validate_k, validate_query_text, validate_query_texts, validate_query_vectors
from antigravity.core.errors import QueryError


@dataclass(frozen=True)
class SearchHit:
    """One search result: document id, cosine ``score`` in [-1, 1], stored ``payload``."""

    doc_id: str
    score: float
    payload: dict[str, Any] = field(default_factory=dict)


class Coalescer:
    """Combine concurrent calls into one batch call: the first caller to find no batch running
    takes every request queued so far (its own included), calls ``run(all_items)`` once and
    hands each caller its slice; callers arriving meanwhile wait and form the next batch.

    Encoding 8 queries in one forward pass costs far less than 8 passes, and the store's
    query holds the GIL anyway, so concurrent searches gain throughput from batching, not
    from threads (measured: ``benchmarks/search_threads.py``). A lone call is a batch of one.

    Args:
        run: ``items -> (n, ...) array`` for a list of ``n`` items; an exception reaches every
            caller of that batch.
    """

    def __init__(self, run: Callable[[list[Any]], np.ndarray]) -> None:
        self._run = run
        self._cv = threading.Condition()
        self._queue: list[list[Any]] = []
        self._busy = False

    def __call__(self, items: list[Any]) -> np.ndarray:
        req: list[Any] = [items, None, None]  # items, result, error
        with self._cv:
            self._queue.append(req)
            while self._busy and req[1] is None and req[2] is None:
                self._cv.wait()
            if req[1] is not None or req[2] is not None:
                return self._result(req)
            self._busy, batch, self._queue = True, self._queue, []
        try:
            flat = [x for r in batch for x in r[0]]
            out = self._run(flat)
            start = 0
            for r in batch:
                r[1], start = out[start : start + len(r[0])], start + len(r[0])
        except BaseException as exc:  # noqa: BLE001 - every caller of the batch gets the error
            for r in batch:
                r[2] = exc
        finally:
            with self._cv:
                self._busy = False
                self._cv.notify_all()
        return self._result(req)

    @staticmethod
    def _result(req: list[Any]) -> np.ndarray:
        if req[2] is not None:
            raise req[2]
        return req[1]


class Searcher:
    """Answers searches for an engine (see :meth:`antigravity.engine.AntigravityEngine.search`).

    Args:
        encoder: the student. store: the vector store. versions: the version manager.
        teacher: the teacher service (fusion). traffic: the traffic buffer. counters: stats.
        settings: ``() -> Settings`` (read live). on_recorded: called after traffic is recorded.
        prior: the opt-in feedback prior (:class:`~antigravity.serving.feedback_prior.FeedbackPrior`), or ``None``.
    """

    def __init__(self, encoder: Any, store: Any, versions: Any, teacher: Any, traffic: Any, counters: Any,
                 settings: Callable[[], Any], on_recorded: Callable[[], None], prior: Any = None, check_filter: Callable[[Any], None] | None = None) -> None:
        self.encoder, self.store, self.versions, self.teacher = encoder, store, versions, teacher
        self.traffic, self.counters, self._settings, self._on_recorded = traffic, counters, settings, on_recorded
        self._encode = Coalescer(lambda texts: self.encoder.encode_uncached(texts))
        self.prior = prior
        #: ``(filter) -> None``, raises QueryError for a filter on a key or kind of value no stored document has
        self.check_filter = check_filter

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Raw student vectors ``(m, d) float32`` (not cached: traffic is unbounded). Raises QueryError."""
        for i, q in enumerate(queries):
            validate_query_text(q, index=i)
        return self._encode(list(queries)) if queries else np.zeros((0, self.encoder.dim), np.float32)

    def search_texts(self, queries: Sequence[str], k: int, record: bool, filter: Any = None) -> list[list[SearchHit]]:
        """One encoder pass for ``queries``, then :meth:`search_vectors`."""
        if isinstance(queries, str):
            raise QueryError("search_batch takes a list of queries, got a single string")
        validate_k(k)
        queries = list(queries)
        return self.search_vectors(self.encode_queries(queries), k, record, queries, filter, texts_checked=True)  # by encode_queries

    def search_vectors(self, raw: Any, k: int, record: bool, texts: Sequence[str] | None, filter: Any = None, *, texts_checked: bool = False) -> list[list[SearchHit]]:
        """Search raw query vectors ``(m, d) float32`` under the served version (one version
        per call, however long it runs). A payload ``filter`` restricts the candidates; the store
        validates and converts it (:func:`antigravity.stores.filters.parse_filter`, once per
        call); ``None`` or ``{}`` is no filter. Filtered searches are not recorded as traffic
        (their top-k is not the query's neighbourhood), counted as ``filtered_searches``. With
        ``feedback.prior_boost > 0`` the candidates are re-ranked by the feedback prior
        (scores are then cosine + boost; counted as ``prior_boosted_queries``). ``texts`` are
        checked (one valid text per row) unless ``texts_checked`` says the caller did."""
        raw, k = validate_query_vectors(raw, self.store.dim or self.encoder.dim), validate_k(k)  # an empty store knows no dim yet: the student's
        if texts is not None and not texts_checked:  # checked before anything is searched or recorded
            texts = validate_query_texts(texts, len(raw))
        flt = filter if filter is not None and filter != {} else None
        if flt is not None and self.check_filter is not None:
            self.check_filter(flt)  # a filter that can only match nothing: refused, not an empty result
        s = self._settings()
        fusion = s.teacher.fusion_weight if texts is not None else 0.0
        prior = self.prior is not None and s.feedback.prior_boost > 0
        with self.versions.reading() as state:
            q = state.query_adapter.transform(raw) if state.query_adapter is not None else raw
            limit = max(k, s.teacher.fusion_candidates if fusion > 0 else k, s.feedback.prior_candidates if prior else k)
            results = self.store.search(q, using=state.slot, k=limit) if flt is None else self.store.search(q, using=state.slot, k=limit, filter=flt)
        if fusion > 0:
            results = self.teacher.fuse(list(texts), results, limit if prior else k, fusion)
        if prior:
            results, touched = self.prior.rerank(raw, results, k)
            self.counters.count("prior_boosted_queries", touched)
        self.counters.count("queries_served", len(raw))
        if flt is not None:
            self.counters.count("filtered_searches", len(raw))
        elif record:
            self.traffic.record(raw, results, texts, s.adaptation.signal_top_k)
            self.counters.count("signals_recorded", len(raw))
            self._on_recorded()
        return [[SearchHit(d, sc, p) for d, sc, p in hits] for hits in results]
