"""Typed errors raised by Antigravity.

Every error the package raises on bad input or failed dependencies derives from
:class:`AntigravityError`, so a caller can catch one type. Subclasses also derive from the
closest built-in (``ValueError``, ``KeyError``, ``FileNotFoundError``...) so code written
against the standard library keeps working.
"""

from __future__ import annotations


class AntigravityError(Exception):
    """Base class of every error raised by Antigravity."""


class ConfigurationError(AntigravityError, ValueError):
    """A setting or argument is out of range, of the wrong type, or contradicts another."""


class ModelNotFoundError(AntigravityError, LookupError):
    """A model name is neither in the registry, nor a local folder, nor reachable on the hub."""


class ModelLoadError(AntigravityError, RuntimeError):
    """A model was found but could not be loaded or materialised."""


class TaskNotFoundError(AntigravityError, LookupError):
    """A benchmark task name is not in the task registry."""


class DatasetError(AntigravityError, ValueError):
    """A dataset directory or file is missing, unreadable or malformed (names the file and line)."""


class DocumentError(AntigravityError, ValueError):
    """A document is malformed: missing ``_id``/``text``, non-string text, duplicate id in a batch."""


class QueryError(AntigravityError, ValueError):
    """A query or search argument is invalid: empty query text, ``k <= 0``, non-finite vector."""


class FeedbackError(AntigravityError, ValueError):
    """A relevance-feedback row is invalid (query, document id, relevance, source, rank or
    time), or names a document the collection does not hold; nothing of the call was stored."""


class EmptyCorpusError(DocumentError):
    """An ingest or benchmark was given no documents."""


class CacheError(AntigravityError, RuntimeError):
    """The on-disk embedding cache is unreadable beyond repair (corrupt entries are dropped, not raised)."""


class StoreError(AntigravityError, RuntimeError):
    """The vector store is unreachable, locked by another process, or returned an inconsistent state."""


class ManifestError(StoreError):
    """The collection's manifest (which student built it, in which store format) does not match
    the running engine, or the store, manifest and adapter registry disagree (damage). The
    message names the file and the recovery command; nothing is changed."""


class AdaptationError(AntigravityError, RuntimeError):
    """An adaptation step (cycle, distillation) failed; the previous adapter version stays active."""


class TeacherError(AntigravityError, RuntimeError):
    """The teacher model or endpoint failed (load error, timeout, bad dimension, non-finite output).

    ``kind`` names the class of failure for counters (``stats()["teacher_failures"]``); the
    subclasses below set it, a plain ``TeacherError`` is ``"teacher"``.
    """

    kind = "teacher"

    def __init__(self, message: str = "", *, kind: str | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind


class TeacherLoadError(TeacherError):
    """The teacher model could not be found or loaded."""

    kind = "load"


class TeacherConnectionError(TeacherError):
    """The teacher endpoint refused or dropped the connection (after retries)."""

    kind = "connection"


class TeacherTimeoutError(TeacherError):
    """The teacher endpoint did not answer within ``teacher.timeout_s`` (after retries)."""

    kind = "timeout"


class TeacherHTTPError(TeacherError):
    """The teacher endpoint answered with an HTTP error status (``status``: 401, 429, 500...)."""

    kind = "http"

    def __init__(self, message: str = "", *, status: int | None = None) -> None:
        super().__init__(message, kind=f"http_{status}" if status is not None else None)
        self.status = status


class TeacherMalformedError(TeacherError):
    """The teacher returned something that is not the documented response (bad JSON, missing,
    duplicate or out-of-range indices, a partial batch, wrong row count)."""

    kind = "malformed"


class TeacherDimensionError(TeacherError):
    """The teacher returned vectors of another dimension than before (or than configured)."""

    kind = "dimension"


class TeacherNonFiniteError(TeacherError):
    """The teacher returned NaN or inf values."""

    kind = "non_finite"


class TeacherRuntimeError(TeacherError):
    """The teacher model or user object raised while encoding (its exception is chained)."""

    kind = "runtime"


class TeacherAlignmentError(TeacherError):
    """No usable teacher→student alignment: too few paired rows, non-finite weights, or
    none fitted yet."""

    kind = "alignment"


def failure_kind(exc: BaseException) -> str:
    """Counter key of a failure (``stats()["teacher_failures"]``): the ``kind`` of a
    :class:`TeacherError` (set by its subclass: ``connection``, ``timeout``, ``http_401``,
    ``malformed``, ``dimension``, ``non_finite``, ``load``, ``runtime``, ``alignment``...),
    else the exception's type name. No message is ever parsed."""
    if isinstance(exc, TeacherError):
        return str(exc.kind)
    return type(exc).__name__


class CheckpointError(AntigravityError, ValueError):
    """An adapter checkpoint does not match the running student (id or dimension) or is corrupt."""
