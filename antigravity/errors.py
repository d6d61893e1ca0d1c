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


class EmptyCorpusError(DocumentError):
    """An ingest or benchmark was given no documents."""


class CacheError(AntigravityError, RuntimeError):
    """The on-disk embedding cache is unreadable beyond repair (corrupt entries are dropped, not raised)."""


class StoreError(AntigravityError, RuntimeError):
    """The vector store is unreachable, locked by another process, or returned an inconsistent state."""


class AdaptationError(AntigravityError, RuntimeError):
    """An adaptation step (cycle, distillation) failed; the previous adapter version stays active."""


class TeacherError(AntigravityError, RuntimeError):
    """The teacher model or endpoint failed (load error, timeout, bad dimension, non-finite output)."""


class CheckpointError(AntigravityError, ValueError):
    """An adapter checkpoint does not match the running student (id or dimension) or is corrupt."""
