"""On-disk embedding cache keyed by (model id, normalised text hash).

One SQLite file per model id under ``<cache_dir>/embeddings/``. SQLite gives atomic,
crash-safe writes: a process killed mid-write leaves the last committed transaction, never
a half-written vector. A file damaged some other way (e.g. truncated by a full disk) is
moved aside to ``*.corrupt-<timestamp>`` and a fresh cache is started, with a warning: a
cache can always be rebuilt, so damage never stops encoding.

The cached vectors are what the encoder returned (L2-normalised float32). Teacher
embeddings of a corpus are cached the same way and form the distillation dataset.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
import threading
import time
import unicodedata
from pathlib import Path
from typing import Sequence

import numpy as np

logger = logging.getLogger(__name__)

_WS = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """Unicode NFC, whitespace runs folded to one space, ends stripped (the cache key input)."""
    return _WS.sub(" ", unicodedata.normalize("NFC", text)).strip()


def text_key(text: str) -> str:
    """sha256 hex digest of :func:`normalise_text` of ``text``."""
    return hashlib.sha256(normalise_text(text).encode("utf-8")).hexdigest()


#: how far a cached row's L2 norm may be from 1 when the cache holds unit vectors
UNIT_TOLERANCE = 1e-3


def _is_unit(v: np.ndarray) -> bool:
    n = float(np.linalg.norm(v))
    return np.isfinite(n) and abs(n - 1.0) <= UNIT_TOLERANCE


def _slug(model_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("_")[:80]
    return f"{safe}-{hashlib.sha256(model_id.encode()).hexdigest()[:10]}"


class EmbeddingCache:
    """Persistent map ``text -> (d,) float32`` for one model id.

    Args:
        cache_dir: folder holding the cache files (created if missing).
        model_id: identifies everything that changes the output vectors (model name,
            max sequence length, dtype); different ids never share entries.
        dim: embedding dimension ``d``; entries of another size are ignored as corrupt.
        unit: every vector is L2-normalised (the encoders' and teachers' outputs are): a row
            whose norm is off 1 by more than :data:`UNIT_TOLERANCE` is neither stored nor
            returned — a damaged row (zeroed or overwritten bytes of the right length pass
            SQLite's checks) is read as missing and recomputed, counted in :attr:`refused_rows`.

    A file whose recorded ``model_id`` differs from ``model_id`` (written by another model) is
    treated as damaged: moved aside, and the cache starts empty.

    Thread-safe (one connection per thread) and process-safe (SQLite locking).
    """

    def __init__(self, cache_dir: str | Path, model_id: str, dim: int, *, unit: bool = False) -> None:
        self.dir = Path(cache_dir) / "embeddings"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.model_id = model_id
        self.dim = int(dim)
        self.unit = bool(unit)
        #: cached rows read as missing because they were not unit-length (``unit=True`` only)
        self.refused_rows = 0
        self.path = self.dir / f"{_slug(model_id)}.sqlite"
        self._local = threading.local()
        self._open_checked()

    # -- connection handling -------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=60.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")
        conn.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)")
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('model_id', ?)", (self.model_id,))
        conn.commit()
        return conn

    def _open_checked(self) -> None:
        try:
            conn = self._connect()
            conn.execute("SELECT count(*) FROM emb").fetchone()
            if conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("quick_check failed")
            (recorded,) = conn.execute("SELECT v FROM meta WHERE k = 'model_id'").fetchone() or (self.model_id,)
            if recorded != self.model_id:
                conn.close()
                raise sqlite3.DatabaseError(f"written for model {recorded!r}, not {self.model_id!r}")
            self._local.conn = conn
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            logger.warning("embedding cache %s is damaged (%s); moved to %s, starting empty", self.path, exc, aside)
            for suffix in ("", "-wal", "-shm"):
                p = Path(str(self.path) + suffix)
                if p.exists():
                    p.rename(str(aside) + suffix)
            self._local.conn = self._connect()

    @property
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    # -- API -----------------------------------------------------------------------
    def get_many(self, texts: Sequence[str]) -> tuple[np.ndarray, list[int]]:
        """Look up ``texts``.

        Returns:
            ``(vectors, missing)``: ``vectors`` is ``(n, d) float32`` with the cached rows
            filled (others zero); ``missing`` lists the row indices not in the cache.
        """
        keys = [text_key(t) for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        found: dict[str, bytes] = {}
        uniq = list(dict.fromkeys(keys))
        for i in range(0, len(uniq), 500):
            chunk = uniq[i : i + 500]
            q = f"SELECT key, vec FROM emb WHERE key IN ({','.join('?' * len(chunk))})"
            found.update(self._conn.execute(q, chunk).fetchall())
        missing: list[int] = []
        refused = 0
        for i, k in enumerate(keys):
            blob = found.get(k)
            if blob is None or len(blob) != 4 * self.dim:
                missing.append(i)
                continue
            v = np.frombuffer(blob, dtype=np.float32)
            if self.unit and not _is_unit(v):
                missing.append(i)
                refused += 1
                continue
            out[i] = v
        if refused:
            self.refused_rows += refused
            logger.warning("embedding cache %s: %d cached rows are not unit vectors (damaged); recomputing them", self.path, refused)
        return out, missing

    def put_many(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store ``vectors`` (``(n, d)`` float32, finite) for ``texts`` in one transaction."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(texts), self.dim):
            raise ValueError(f"expected vectors of shape ({len(texts)}, {self.dim}), got {vectors.shape}")
        rows = [(text_key(t), v.tobytes()) for t, v in zip(texts, vectors) if np.isfinite(v).all() and (not self.unit or _is_unit(v))]
        with self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?)", rows)

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM emb").fetchone()[0])

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
