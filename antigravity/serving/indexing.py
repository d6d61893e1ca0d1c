"""Index policy: when the served slots get an HNSW index, and payload indexes from settings.

Qdrant Edge has no background optimizer: points written after the last ``optimize()`` are
searched exactly (correct, slower) until the next one. The policy here: exact search below
``store.index_threshold`` documents; above it, ``optimize()`` runs in a background thread
after an ingest call and after a promotion rewrote a slot, and on request
(:meth:`Indexer.optimize`, ``antigravity index``). Searches keep working while it runs: on
the Edge store the graphs are built in a child process on a copy of the shard, swapped in at the
end (:meth:`antigravity.stores.edge.EdgeStore.optimize`; measured by
``benchmarks/search_during_optimize.py``); ingest, delete and promotions wait for it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from antigravity.core.threads import join

logger = logging.getLogger("antigravity.engine")


class Indexer:
    """Runs the store's ``optimize()`` by the policy above, one at a time.

    Args:
        store: the vector store (``optimize``, ``create_payload_index``, ``count``, ``dim``).
        settings: ``() -> Settings`` (``store.index_threshold``, ``store.payload_indexes``).
        counters: ``optimizations`` and ``optimize_errors`` are counted here.
    """

    def __init__(self, store: Any, settings: Callable[[], Any], counters: Any) -> None:
        self.store, self._settings, self._counters = store, settings, counters
        self._lock = threading.Lock()  # one optimize at a time
        self._thread: threading.Thread | None = None
        self._again = False
        self._payload_indexed: set[str] = set()
        self.last_optimize_s: float | None = None

    def ensure_payload_indexes(self) -> None:
        """Create the payload indexes ``store.payload_indexes`` names (idempotent)."""
        if self.store.dim is None:
            return
        for field, schema in self._settings().store.payload_indexes.items():
            if field not in self._payload_indexed:
                self.store.create_payload_index(field, schema)
                self._payload_indexed.add(field)

    def after_write(self) -> None:
        """An ingest call or a slot rewrite finished: payload indexes, then a background
        ``optimize()`` when the collection is at or above ``store.index_threshold``."""
        self.ensure_payload_indexes()
        if self.store.dim is None or self.store.count() < self._settings().store.index_threshold:
            return
        if self._thread is not None and self._thread.is_alive():
            self._again = True  # the running one may have missed these points: run once more
            return
        self._thread = threading.Thread(target=self._background, name="antigravity-optimize", daemon=True)
        self._thread.start()

    def after_write_counted(self) -> None:
        """:meth:`after_write` after an ingest: a failure (a payload index the store refuses)
        is logged and counted as ``index_errors``, never raised — the documents are stored
        and searchable (exact filtered search), and the ingest's own result or error stands."""
        try:
            self.after_write()
        except Exception as exc:  # noqa: BLE001 - see the docstring: counted, logged
            self._counters.count("index_errors")
            logger.error("payload indexes / optimize after an ingest failed (%s: %s); documents are stored, filtered search stays exact", type(exc).__name__, exc)

    def _background(self) -> None:
        while True:
            self._again = False
            try:
                self.optimize()
            except Exception as exc:  # noqa: BLE001 - a background thread has no caller; exact search still answers
                self._counters.count("optimize_errors")
                logger.error("background optimize failed (%s: %s); searches stay exact for new points", type(exc).__name__, exc)
            if not self._again:
                return

    def optimize(self) -> float:
        """Build the HNSW index of the served slots now (blocking); returns seconds taken."""
        with self._lock:
            t0 = time.perf_counter()
            self.store.optimize()
            self.last_optimize_s = time.perf_counter() - t0
            self._counters.count("optimizations")
            return self.last_optimize_s

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background optimize; True if none is running afterwards."""
        return join(self._thread, timeout)
