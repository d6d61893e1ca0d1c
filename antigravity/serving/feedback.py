"""Relevance feedback, durable: clicks, judgments and qrels kept for training later.

Where
=====

``<data_dir>/feedback/<collection>.sqlite`` (the folder made private, 0700, like the data
folder; the file created 0600), or an in-memory SQLite database for an in-memory store. The
file is opened on the first write (reads of a missing file see no rows), in WAL mode with
``synchronous=FULL``: a row is committed to disk before :meth:`FeedbackStore.add` returns,
so killing the process (``kill -9``) loses nothing acknowledged, and an interrupted
:meth:`~FeedbackStore.add_many` leaves none of its rows (one transaction).

**Damage is not read as emptiness.** Beside the database, ``<collection>.sqlite.bound``
(JSON ``{"stored": n}``, written atomically) keeps a lower bound on the lifetime ``stored``
total: raised after the first write, whenever the total has doubled since, and on close
(O(log n) extra writes). Opening a database whose total is below it — truncated, replaced by
an older copy, or deleted while the bound remains — raises
:class:`~antigravity.core.errors.StoreError` naming both files instead of serving fewer rows;
a damaged bound file is refused the same way. Delete both files to start empty on purpose.

Schema (``PRAGMA user_version = 1``)
====================================

``feedback``: ``id INTEGER PRIMARY KEY AUTOINCREMENT`` (write order), ``query TEXT`` (as
given), ``query_key TEXT`` (:func:`query_key`), ``doc_id TEXT``, ``relevance INTEGER``,
``source TEXT``, ``rank INTEGER NULL``, ``at REAL`` (UTC epoch seconds), ``UNIQUE (query_key,
doc_id, source)``. ``totals``: ``name TEXT PRIMARY KEY, value INTEGER`` — ``rows`` (kept
equal to the table's row count in the same transaction) and lifetime ``stored``,
``replaced``, ``dropped``.

Rows
====

* ``query``: a non-empty ``str``, valid Unicode (:func:`~antigravity.core.documents.validate_query_text`).
  Its key, ``query_key``, is NFKC + casefold + whitespace collapsed: ``"Aspirin  fever"`` and
  ``"aspirin fever"`` are the same query.
* ``doc_id``: an id :func:`~antigravity.core.documents.validate_id` accepts (``7`` is ``"7"``)
  that is stored in the collection — the store is asked; an unknown id refuses the call.
* ``relevance``: an ``int`` (not ``bool``) in ``0..feedback.max_relevance`` (default 3):
  ``0`` = shown and not relevant (skipped, or judged non-relevant), ``>= 1`` = relevant, graded.
* ``source``: one of :data:`SOURCES` (``click``, ``judgment``, ``qrels``).
* ``rank``: ``None`` or an ``int >= 1`` (the position the document was shown at).
* ``at``: ``None`` (now), epoch seconds (``int``/``float``), an ISO-8601 string with a UTC
  offset (``"2026-01-02T03:04:05Z"``) or an aware ``datetime``; stored as UTC epoch seconds.
  Refused: NaN/inf, before 1970, more than one day in the future (a millisecond epoch
  passed as seconds), a string or ``datetime`` without an offset.

**Deduplication.** The same ``(query_key, doc_id, source)`` written again replaces the
earlier row (last write wins: its text, relevance, rank and time; it becomes the newest
row) and is counted as ``replaced``. **Bound.** At most ``feedback.max_rows`` rows are kept;
a write beyond it drops the oldest written rows (smallest ``id``) in the same transaction,
counted as ``dropped``. **Validation first.** Every row of a call is checked (and its
documents looked up) before anything is written; the first bad row raises one
:class:`~antigravity.core.errors.FeedbackError` naming it and the offending value.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sqlite3
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from antigravity.core.documents import validate_id, validate_query_text
from antigravity.core.errors import DocumentError, FeedbackError, QueryError, StoreError
from antigravity.core.files import atomic_write_bytes, make_private_dir
from antigravity.datasets import iter_jsonl, load_judgments
from antigravity.serving.counters import Counters

logger = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = ("click", "judgment", "qrels")
FIELDS: tuple[str, ...] = ("query", "doc_id", "relevance", "source", "rank", "at")
SCHEMA_VERSION = 1
MAX_FUTURE_S = 86400.0  # ``at`` may be this far ahead of the clock (skew), no further
_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    query     TEXT    NOT NULL,
    query_key TEXT    NOT NULL,
    doc_id    TEXT    NOT NULL,
    relevance INTEGER NOT NULL,
    source    TEXT    NOT NULL,
    rank      INTEGER,
    at        REAL    NOT NULL,
    UNIQUE (query_key, doc_id, source)
);
CREATE TABLE IF NOT EXISTS totals (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO totals (name, value) VALUES ('rows', 0), ('stored', 0), ('replaced', 0), ('dropped', 0);
"""


@dataclass(frozen=True)
class FeedbackRow:
    """One validated row (``at``: UTC epoch seconds)."""

    query: str
    query_key: str
    doc_id: str
    relevance: int
    source: str
    rank: int | None
    at: float


@dataclass(frozen=True)
class AddResult:
    """What one write did: rows ``stored`` (all given), of which ``replaced`` an earlier row,
    and ``dropped`` oldest rows over ``feedback.max_rows``."""

    stored: int
    replaced: int
    dropped: int


@dataclass(frozen=True)
class FeedbackQuery:
    """A distinct query (by key) with its latest text and ``{doc_id: relevance}`` (the latest
    row per document over the selected sources). ``clicks``: ``{doc_id: rank}`` of the
    documents whose latest row is a ``click`` (``rank`` ``None`` when not recorded) — the
    positions inverse-propensity weighting needs (``feedback.propensity``)."""

    query: str
    key: str
    judgments: dict[str, int]
    clicks: dict[str, int | None] = field(default_factory=dict)


def query_key(text: str) -> str:
    """The normalised form deduplication and grouping use: NFKC, casefold, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def feedback_path(data_dir: str | Path, collection: str) -> Path:
    """``<data_dir>/feedback/<collection>.sqlite``."""
    return Path(data_dir).expanduser() / "feedback" / f"{collection}.sqlite"


def parse_time(at: Any, now: float) -> float:
    """``at`` (see the module doc) as UTC epoch seconds; ``None`` is ``now``.

    Raises:
        ValueError: a refused type or value (the message names it).
    """
    if at is None:
        return now
    if isinstance(at, str):
        try:
            at = datetime.fromisoformat(at.strip())
        except ValueError:
            raise ValueError(f"at {at!r} is not an ISO-8601 time") from None
    if isinstance(at, datetime):
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(f"at {at.isoformat()!r} has no UTC offset (add 'Z' or '+00:00')")
        at = at.timestamp()
    if isinstance(at, bool) or not isinstance(at, (int, float)):
        raise ValueError(f"at {at!r} of type {type(at).__name__} is not a time (epoch seconds, ISO-8601 string or aware datetime)")
    if not math.isfinite(at) or at < 0 or at > now + MAX_FUTURE_S:
        raise ValueError(f"at {at!r} is outside 1970 .. now + 1 day (epoch seconds expected, not milliseconds)")
    return float(at)


def _label(labels: Sequence[str] | None, i: int) -> str:
    return labels[i] if labels is not None else f"feedback row #{i}"


def validate_row(row: Any, *, label: str, max_relevance: int, now: float) -> FeedbackRow:
    """Check one row (a mapping with :data:`FIELDS` keys; ``query`` and ``doc_id`` required,
    defaults ``relevance=1``, ``source="click"``) without looking its document up.

    Raises:
        FeedbackError: ``"<label>: <what> <value> ..."`` for the first problem.
    """
    if not isinstance(row, Mapping):
        raise FeedbackError(f"{label}: expected a dict with keys {', '.join(FIELDS)}, got {type(row).__name__}")
    unknown = [k for k in row if k not in FIELDS]
    missing = [k for k in ("query", "doc_id") if k not in row]
    if unknown or missing:
        raise FeedbackError(f"{label}: " + (f"unknown key(s) {unknown}" if unknown else f"missing key(s) {missing}") + f" (keys: {', '.join(FIELDS)})")
    try:
        query = validate_query_text(row["query"])
        doc_id = validate_id(row["doc_id"])
        at = parse_time(row.get("at"), now)
    except (QueryError, DocumentError, ValueError) as exc:
        raise FeedbackError(f"{label}: " + str(exc).replace("query #0", f"query {row['query']!r}", 1).replace("invalid id", "invalid doc_id", 1)) from None
    rel, source, rank = row.get("relevance", 1), row.get("source", "click"), row.get("rank")
    if isinstance(rel, bool) or not isinstance(rel, int) or not 0 <= rel <= max_relevance:
        raise FeedbackError(f"{label}: relevance {rel!r} must be an int in 0..{max_relevance} (feedback.max_relevance; bool is not accepted)")
    if not isinstance(source, str) or source not in SOURCES:
        raise FeedbackError(f"{label}: source {source!r} is not one of {', '.join(SOURCES)}")
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
        raise FeedbackError(f"{label}: rank {rank!r} must be None or an int >= 1")
    return FeedbackRow(query, query_key(query), doc_id, rel, source, rank, at)


class FeedbackStore:
    """The feedback rows of one collection (see the module doc for the rules).

    Args:
        path: the SQLite file (:func:`feedback_path`), ``None`` for an in-memory database.
        settings: ``() -> Settings`` read live (``feedback.max_rows``, ``feedback.max_relevance``).
        exists: ``ids -> set`` of those stored in the collection (asked before any write).
        collection: the collection name, for messages.

    Thread-safe (one lock around the connection). Every SQLite failure (locked, disk full,
    not a database) is raised as :class:`~antigravity.core.errors.StoreError` naming the file.
    """

    def __init__(self, path: str | Path | None, settings: Callable[[], Any], exists: Callable[[list[str]], set[str]], *, collection: str = "antigravity") -> None:
        self.path = None if path is None else Path(path)
        self._settings, self._exists, self.collection = settings, exists, collection
        self.counters = Counters()  # this process: stored / replaced / dropped
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._bound_path = None if self.path is None else self.path.with_name(self.path.name + ".bound")
        self._bound = 0  # lower bound on totals.stored last written to _bound_path
        #: incremented by every committed write of this process (readers that cache derived data compare it)
        self.generation = 0

    # -- connection ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _db(self, create: bool) -> Iterator[sqlite3.Connection | None]:
        """The connection under the lock (``None``: no file yet and ``create`` is false)."""
        with self._lock:
            if self._closed:
                raise StoreError(f"the feedback store of collection {self.collection!r} is closed")
            try:
                yield self._connection(create)
            except sqlite3.Error as exc:
                raise StoreError(f"feedback database {str(self.path or ':memory:')!r}: {exc}") from None

    def _read_bound(self) -> int:
        """The acknowledged lower bound on ``totals.stored`` (0 without a bound file).
        Raises StoreError for a damaged bound file."""
        if self._bound_path is None or not self._bound_path.exists():
            return 0
        try:
            value = json.loads(self._bound_path.read_bytes())["stored"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"feedback bound file {str(self._bound_path)!r} is damaged ({type(exc).__name__}: {exc}); restore it with the database from a backup") from None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise StoreError(f"feedback bound file {str(self._bound_path)!r} is damaged: stored = {value!r}, expected an integer >= 0")
        return value

    def _write_bound(self, stored: int) -> None:
        if self._bound_path is not None and stored > self._bound:
            atomic_write_bytes(self._bound_path, json.dumps({"stored": stored}).encode())
            self._bound = stored

    def _damaged(self, stored: int, bound: int) -> StoreError:
        return StoreError(
            f"feedback database {str(self.path)!r} records {stored} rows ever stored, but at least {bound} were acknowledged "
            f"({str(self._bound_path)!r}): it was truncated, deleted or replaced by an older copy; restore it from a backup, or delete both files to start empty"
        )

    def _connection(self, create: bool) -> sqlite3.Connection | None:
        if self._conn is not None:
            return self._conn
        bound = self._read_bound()
        if self.path is not None and not self.path.exists():
            if bound > 0:
                raise self._damaged(0, bound)
            if not create:
                return None
            make_private_dir(self.path.parent)
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))  # WAL and shm files copy its mode
            os.chmod(self.path, 0o600)
        conn = sqlite3.connect(":memory:" if self.path is None else str(self.path), isolation_level=None, check_same_thread=False, timeout=30.0)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"feedback database {str(self.path)!r} has schema version {version}; this release reads {SCHEMA_VERSION}")
            has_totals = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'totals'").fetchone() is not None
            stored = self._total(conn, "stored") if has_totals else 0
            if stored < bound:  # checked before anything is written: a refused file is left as found
                raise self._damaged(stored, bound)
            if self.path is not None:
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION};")
        except BaseException:
            conn.close()
            raise
        self._conn, self._bound = conn, bound
        return conn

    def close(self) -> None:
        """Close the database (idempotent); later calls raise StoreError."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._conn is not None:
                try:
                    self._write_bound(self._total(self._conn, "stored"))
                except (sqlite3.Error, OSError) as exc:  # the bound only lags: it stays a lower bound
                    logger.warning("feedback bound not updated on close: %s", exc)
                self._conn.close()
                self._conn = None

    # -- writes ----------------------------------------------------------------------------
    def validate(self, rows: Iterable[Any], *, labels: Sequence[str] | None = None) -> list[FeedbackRow]:
        """Check every row and that each document is stored; returns them validated.
        ``labels`` (one per row, e.g. ``"file.jsonl:3"``) name rows in messages.

        Raises:
            FeedbackError: the first invalid row, or the first row whose document is not stored.
            StoreError: the vector store could not be asked.
        """
        s = self._settings().feedback
        now = time.time()
        out = [validate_row(r, label=_label(labels, i), max_relevance=s.max_relevance, now=now) for i, r in enumerate(rows)]
        ids = list(dict.fromkeys(r.doc_id for r in out))
        found: set[str] = set()
        for start in range(0, len(ids), 1024):
            found |= set(self._exists(ids[start : start + 1024]))
        unknown = [i for i, r in enumerate(out) if r.doc_id not in found]
        if unknown:
            n = len({out[i].doc_id for i in unknown})
            raise FeedbackError(f"{_label(labels, unknown[0])}: document {out[unknown[0]].doc_id!r} is not stored in collection {self.collection!r} "
                                f"({n} unknown document id(s) in this call); nothing was stored")
        return out

    def add(self, query: str, doc_id: str | int, relevance: int = 1, *, source: str = "click", rank: int | None = None, at: Any = None) -> AddResult:
        """Store one row; on disk when this returns. Raises FeedbackError or StoreError."""
        row = {"query": query, "doc_id": doc_id, "relevance": relevance, "source": source, "rank": rank, "at": at}
        return self.write(self.validate([row], labels=["feedback"]))

    def add_many(self, rows: Iterable[Any], *, labels: Sequence[str] | None = None) -> AddResult:
        """Store rows (mappings with :data:`FIELDS` keys) all or nothing: every row is
        validated first, then one transaction. Raises FeedbackError or StoreError."""
        return self.write(self.validate(list(rows), labels=labels))

    def write(self, rows: list[FeedbackRow]) -> AddResult:
        """Write validated ``rows`` in one transaction (dedup, then the bound)."""
        if not rows:
            return AddResult(0, 0, 0)
        max_rows = self._settings().feedback.max_rows
        with self._db(create=True) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                replaced = 0
                for r in rows:
                    replaced += conn.execute("DELETE FROM feedback WHERE query_key = ? AND doc_id = ? AND source = ?", (r.query_key, r.doc_id, r.source)).rowcount
                    conn.execute("INSERT INTO feedback (query, query_key, doc_id, relevance, source, rank, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                 (r.query, r.query_key, r.doc_id, r.relevance, r.source, r.rank, r.at))
                total = self._total(conn, "rows") + len(rows) - replaced
                dropped = max(0, total - max_rows)
                if dropped:
                    conn.execute("DELETE FROM feedback WHERE id IN (SELECT id FROM feedback ORDER BY id LIMIT ?)", (dropped,))
                for name, n in (("rows", len(rows) - replaced - dropped), ("stored", len(rows)), ("replaced", replaced), ("dropped", dropped)):
                    conn.execute("UPDATE totals SET value = value + ? WHERE name = ?", (n, name))
                conn.execute("COMMIT")
                self.generation += 1
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            stored = self._total(conn, "stored")
            if stored >= max(1, 2 * self._bound):  # after the commit: the bound never exceeds what is on disk
                try:
                    self._write_bound(stored)
                except OSError as exc:  # the rows are committed; the bound only lags behind them
                    logger.warning("feedback bound %s not updated: %s", self._bound_path, exc)
        for name, n in (("stored", len(rows)), ("replaced", replaced), ("dropped", dropped)):
            self.counters.count(name, n)
        return AddResult(len(rows), replaced, dropped)

    # -- reads -----------------------------------------------------------------------------
    @staticmethod
    def _total(conn: sqlite3.Connection, name: str) -> int:
        return int(conn.execute("SELECT value FROM totals WHERE name = ?", (name,)).fetchone()[0])

    def count(self) -> int:
        """Rows stored."""
        with self._db(create=False) as conn:
            return 0 if conn is None else self._total(conn, "rows")

    def queries(self, sources: Sequence[str] | None = None) -> list[FeedbackQuery]:
        """Distinct queries (by key, sorted by key) with their judged documents and grades,
        and the shown rank of those whose latest row is a click, from rows of ``sources`` (default: all)."""
        sql = "SELECT query_key, query, doc_id, relevance, source, rank FROM feedback"
        args: tuple[Any, ...] = ()
        if sources is not None:
            sql += f" WHERE source IN ({', '.join('?' * len(sources))})"
            args = tuple(sources)
        with self._db(create=False) as conn:
            rows = [] if conn is None else conn.execute(sql + " ORDER BY query_key, at, id", args).fetchall()
        out: dict[str, FeedbackQuery] = {}
        for key, text, doc_id, rel, source, rank in rows:  # later rows overwrite: the latest text, grade and source win
            q = out.get(key)
            judgments, clicks = (q.judgments, q.clicks) if q else ({}, {})
            judgments[doc_id] = rel
            if source == "click":
                clicks[doc_id] = rank
            else:
                clicks.pop(doc_id, None)
            out[key] = FeedbackQuery(text, key, judgments, clicks)
        return list(out.values())

    def export(self, batch: int = 10000) -> Iterator[dict[str, Any]]:
        """Every row in write order as ``{"query", "doc_id", "relevance", "source", "rank",
        "at"}`` (``at`` in epoch seconds) — the keys ``antigravity feedback import`` reads."""
        last = 0
        while True:
            with self._db(create=False) as conn:
                page = [] if conn is None else conn.execute(
                    "SELECT id, query, doc_id, relevance, source, rank, at FROM feedback WHERE id > ? ORDER BY id LIMIT ?", (last, batch)).fetchall()
            if not page:
                return
            for rid, *values in page:
                yield dict(zip(FIELDS, values))
            last = page[-1][0]

    def stats(self) -> dict[str, Any]:
        """``{"path", "rows", "queries", "documents", "by_source", "by_relevance", "totals"}``
        (``totals``: lifetime ``stored``/``replaced``/``dropped`` from the database)."""
        with self._db(create=False) as conn:
            if conn is None:
                return {"path": str(self.path), "rows": 0, "queries": 0, "documents": 0, "by_source": {}, "by_relevance": {}, "totals": {}}
            one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
            return {
                "path": str(self.path or ":memory:"), "rows": self._total(conn, "rows"),
                "queries": one("SELECT count(DISTINCT query_key) FROM feedback"), "documents": one("SELECT count(DISTINCT doc_id) FROM feedback"),
                "by_source": dict(conn.execute("SELECT source, count(*) FROM feedback GROUP BY source").fetchall()),
                "by_relevance": dict(conn.execute("SELECT relevance, count(*) FROM feedback GROUP BY relevance").fetchall()),
                "totals": {k: v for k, v in conn.execute("SELECT name, value FROM totals").fetchall() if k != "rows"},
            }

    def summary(self) -> dict[str, int]:
        """``engine.stats()["feedback"]``: rows stored, and what this process stored, replaced and dropped."""
        return {"rows": self.count(), **{k: self.counters.get(k) for k in ("stored", "replaced", "dropped")}}


# -- files -------------------------------------------------------------------------------
def read_feedback_jsonl(path: str | Path, *, source: str = "judgment") -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of a JSONL file (one object a line: ``query``, ``doc_id``, ``relevance``, optional
    ``source`` — default ``source`` —, ``rank``, ``at``) and their ``file:line`` labels.

    Raises:
        DatasetError: unreadable file, invalid JSON, a line that is not an object (file:line).
        FeedbackError: a line without ``query``, ``doc_id`` or ``relevance`` (file:line).
    """
    path = Path(path)
    rows, labels = [], []
    for lineno, obj in iter_jsonl(path):
        missing = [k for k in ("query", "doc_id", "relevance") if k not in obj]
        if missing:
            raise FeedbackError(f"{path}:{lineno}: missing key(s) {missing} (keys: {', '.join(FIELDS)})")
        rows.append({"source": source, **obj})
        labels.append(f"{path}:{lineno}")
    return rows, labels


def beir_feedback_rows(data_dir: str | Path, split: str, *, source: str = "qrels") -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of a BEIR split's qrels (query text from ``queries.jsonl``, never its
    ``metadata``; relevance from the qrels) and labels naming the qrels file and pair.
    Raises DatasetError (see :func:`antigravity.datasets.load_judgments`)."""
    queries, qrels, qpath = load_judgments(data_dir, split)
    rows, labels = [], []
    for qid, docs in qrels.items():
        for doc_id, rel in docs.items():
            rows.append({"query": queries[qid], "doc_id": doc_id, "relevance": rel, "source": source})
            labels.append(f"{qpath}: query {qid!r}, document {doc_id!r}")
    return rows, labels
