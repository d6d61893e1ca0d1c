"""The bounded buffer of served queries that label-free signals learn from."""

from __future__ import annotations

import collections
from typing import Sequence

import numpy as np

from antigravity.adaptation.context import TrafficRecord


class TrafficBuffer:
    """The last ``maxlen`` served queries (``adaptation.max_signals``), oldest dropped first.

    Appends come from search threads (``deque.append`` is atomic in CPython); readers take
    a :meth:`snapshot` list, so a cycle never sees the buffer change under it.
    """

    def __init__(self, maxlen: int) -> None:
        self._records: collections.deque[TrafficRecord] = collections.deque(maxlen=maxlen)

    def __len__(self) -> int:
        return len(self._records)

    def record(self, raw: np.ndarray, results: Sequence[Sequence[tuple]], texts: Sequence[str] | None, top: int) -> None:
        """Keep each query's raw vector ``(d,) float32``, its top-``top`` doc ids and scores,
        and its text when known."""
        for i, (vec, hits) in enumerate(zip(raw, results)):
            text = texts[i] if texts is not None else None
            self._records.append(TrafficRecord(vec.copy(), [h[0] for h in hits[:top]], np.array([h[1] for h in hits[:top]], np.float32), text))

    def snapshot(self) -> list[TrafficRecord]:
        """The buffered records, oldest first (a copy)."""
        return list(self._records)

    def texts(self) -> list[str]:
        """Texts of the buffered queries that have one."""
        return [r.text for r in self.snapshot() if r.text]

    def resize(self, maxlen: int) -> None:
        """Change the bound, keeping the newest records."""
        self._records = collections.deque(self._records, maxlen=maxlen)
