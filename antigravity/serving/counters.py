"""Thread-safe counters behind ``engine.stats()``."""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any

from antigravity.settings import mask_url

logger = logging.getLogger("antigravity.engine")


class Counters:
    """Named integer counters and per-kind teacher-failure counts, updated from many threads.

    ``+=`` on a dict is a read then a write: two search threads could both read the old
    value and lose a count, so every update holds one lock.
    """

    def __init__(self) -> None:
        self._values: dict[str, Any] = collections.defaultdict(int)
        self._lock = threading.Lock()

    def count(self, key: str, n: int = 1) -> None:
        """Add ``n`` to counter ``key`` atomically."""
        with self._lock:
            self._values[key] += n

    def get(self, key: str) -> int:
        """Current value of counter ``key`` (0 if never counted)."""
        with self._lock:
            return self._values.get(key, 0)

    def record_failure(self, kind: str, exc: BaseException) -> None:
        """Count a teacher failure by ``kind`` (``teacher_failures[kind]`` and
        ``teacher_failures_total``); log each kind once, URL credentials masked."""
        with self._lock:
            failures = self._values.setdefault("teacher_failures", {})
            first = kind not in failures
            failures[kind] = failures.get(kind, 0) + 1
            self._values["teacher_failures_total"] += 1
        if first:
            logger.warning("teacher failure (%s): %s — falling back (hybrid/offline -> baseline, fusion -> student ranking)", kind, mask_url(str(exc)))

    def snapshot(self) -> dict[str, Any]:
        """A copy of every counter (nested dicts copied)."""
        with self._lock:
            return {k: dict(v) if isinstance(v, dict) else v for k, v in self._values.items()}
