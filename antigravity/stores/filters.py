"""Payload filters for :meth:`VectorStore.search`: one small dict form, or Qdrant's own model.

Dict form (every condition must hold)::

    {"lang": "en"}                       # match a value: str, int or bool
    {"tag": ["a", "b"]}                  # match any of a non-empty list (all str, or all int)
    {"year": {"gte": 2010, "lt": 2020}}  # range: any of gte, gt, lte, lt (int or float)
    {"lang": "en", "year": {"gte": 2010}}

Keys are payload keys (a dotted key reaches into nested objects, as in Qdrant); ``doc_id`` is
the stored document id. A payload value that is a list matches when any element matches.
Floats cannot be matched exactly (Qdrant matches str, int and bool only): use a range.
``{}`` is no condition (everything matches).

Or a :class:`qdrant_client.models.Filter` (``must`` / ``should`` / ``must_not``), passed to a
Qdrant backend as it is; :class:`~antigravity.stores.edge.EdgeStore` supports the subset
``must`` / ``should`` / ``must_not`` of ``FieldCondition`` with ``MatchValue``, ``MatchAny``
or ``Range``, and nested ``Filter``\\ s.

Sources: Qdrant filtering documentation (https://qdrant.tech/documentation/concepts/filtering/):
match, match any, range; clauses must / should / must_not.

Errors: anything malformed raises :class:`~antigravity.core.errors.QueryError` with one line
naming the bad key or value, before the store is touched.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from antigravity.core.documents import RESERVED_PREFIX
from antigravity.core.errors import QueryError

__all__ = ["RANGE_OPS", "parse_filter", "payload_path", "unmatchable"]

RANGE_OPS = ("gte", "gt", "lte", "lt")
"""Operators of the dict form's range condition (Qdrant's ``Range`` fields)."""

_INT64 = 2**63


def _key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise QueryError(f"filter key {key!r} must be a non-empty string")
    if key.startswith(RESERVED_PREFIX):
        raise QueryError(f"filter key {key!r} is reserved (keys starting with {RESERVED_PREFIX!r} are engine flags)")
    return key


def _scalar(key: str, value: Any) -> str | int | bool:
    if isinstance(value, float):
        raise QueryError(f"filter[{key!r}]: {value!r} is a float, which cannot be matched exactly; use a range such as {{'gte': {value!r}, 'lte': {value!r}}}")
    if not isinstance(value, (str, int, bool)):
        raise QueryError(f"filter[{key!r}]: {value!r} ({type(value).__name__}) is not a str, int or bool")
    if isinstance(value, int) and not isinstance(value, bool) and not -_INT64 <= value < _INT64:
        raise QueryError(f"filter[{key!r}]: {value} does not fit in a 64-bit integer")
    return value


def _any(key: str, values: list) -> list:
    if not values:
        raise QueryError(f"filter[{key!r}]: empty list (it would match nothing; give at least one value)")
    items = [_scalar(key, v) for v in values]
    if not (all(isinstance(v, str) for v in items) or all(isinstance(v, int) and not isinstance(v, bool) for v in items)):
        raise QueryError(f"filter[{key!r}]: list values must be all str or all int, got {values!r}")
    return items


def _range(key: str, spec: dict, models: Any) -> Any:
    if not spec:
        raise QueryError(f"filter[{key!r}]: empty range (give at least one of {', '.join(RANGE_OPS)})")
    for op, v in spec.items():
        if op not in RANGE_OPS:
            raise QueryError(f"filter[{key!r}]: unknown operator {op!r} (one of {', '.join(RANGE_OPS)})")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise QueryError(f"filter[{key!r}][{op!r}]: {v!r} is not a finite number")
    return models.Range(**spec)


def _condition(key: Any, value: Any, models: Any) -> Any:
    key = _key(key)
    if isinstance(value, dict):
        return models.FieldCondition(key=key, range=_range(key, value, models))
    if isinstance(value, (list, tuple)):
        return models.FieldCondition(key=key, match=models.MatchAny(any=_any(key, list(value))))
    return models.FieldCondition(key=key, match=models.MatchValue(value=_scalar(key, value)))


def _clause(flt: Any, name: str) -> list:
    """The conditions of one clause (``must``, ``should``, ``must_not``) of a Qdrant ``Filter``:
    a list, one condition or ``None``, as a list."""
    part = getattr(flt, name, None)
    return part if isinstance(part, list) else [] if part is None else [part]


def _clauses(flt: Any) -> list:
    """The conditions directly under a Qdrant ``Filter`` (must, should, must_not, min_should)."""
    out = []
    for name in ("must", "should", "must_not"):
        out.extend(_clause(flt, name))
    if getattr(flt, "min_should", None) is not None:
        out.extend(flt.min_should.conditions)
    return out


def _check_keys(flt: Any, models: Any) -> None:
    """Refuse a reserved key anywhere in a Qdrant ``Filter``."""
    for cond in _clauses(flt):
        if isinstance(cond, models.Filter):
            _check_keys(cond, models)
            continue
        for inner in (cond, getattr(cond, "is_empty", None), getattr(cond, "is_null", None), getattr(cond, "nested", None)):
            key = getattr(inner, "key", None)
            if isinstance(key, str) and key.startswith(RESERVED_PREFIX):
                raise QueryError(f"filter key {key!r} is reserved (keys starting with {RESERVED_PREFIX!r} are engine flags)")
        nested = getattr(cond, "nested", None)
        if nested is not None:
            _check_keys(nested.filter, models)


def payload_path(key: str) -> str:
    """A filter key as the payload-key map records it (:meth:`DocumentCollection.payload_fields`):
    a trailing ``[]`` (Qdrant's "any element of this array") dropped — elements are recorded
    under the array's own key — while ``[]`` inside a path (``authors[].name``, objects in an
    array) stays."""
    while key.endswith("[]"):
        key = key[:-2]
    return key


def _judgeable(key: str) -> bool:
    """Whether the map can judge ``key`` (:func:`payload_path` applied): names joined by ``.``
    or ``[].``; quoted keys (``"a.b"``), indexes (``a[0]``) and arrays of arrays (``a[][]``) are
    Qdrant syntax the map does not record, so conditions on them are not judged."""
    return not any(c in key.replace("[].", ".") for c in '"[]')


def unmatchable(obj: Any, problem: Callable[[str, str, list], str | None]) -> str | None:
    """Why the filter ``obj`` (the dict form or a ``qdrant_client.models.Filter``) can match no
    document *because of a condition it names*, or ``None``. ``problem(key, how, values)``
    judges one field condition — ``how`` is ``"match"`` (``values`` the matched scalars),
    ``"range"`` (numbers), ``"datetime"`` (an RFC 3339 range) or ``"text"`` (``MatchText``,
    ``MatchTextAny``, ``MatchPhrase``, ``MatchPrefix``, ``MatchSubstring``: text) — and returns a reason when it
    can match nothing. A ``Filter`` matches nothing when one of its ``must`` conditions does, or
    when every one of its ``should`` conditions does, or when fewer of its ``min_should``
    conditions than ``min_count`` can match; a ``nested`` condition is judged through its inner
    filter, each inner key read under the array (``nested.key`` ``authors`` + ``name`` =
    ``authors[].name``); ``must_not`` is never a reason (a
    condition there that matches nothing excludes nothing, which can be meant: a flag no
    document has yet). Conditions of other kinds (``is_empty``, ``is_null``, ``has_id``,
    ``values_count``, ``MatchExcept``) are not judged; malformed dict
    entries are left to :func:`parse_filter`. Used by :meth:`DocumentCollection.check_filter`
    before a search."""
    if isinstance(obj, dict):
        for key, cond in obj.items():
            if not isinstance(key, str) or not _judgeable(payload_path(key)):
                continue
            if isinstance(cond, dict):
                why = problem(payload_path(key), "range", [])
            else:
                why = problem(payload_path(key), "match", list(cond) if isinstance(cond, (list, tuple)) else [cond])
            if why:
                return why
        return None
    from qdrant_client import models

    if not isinstance(obj, models.Filter):
        return None
    _TEXT_MATCHES = tuple(getattr(models, n) for n in ("MatchText", "MatchTextAny", "MatchPhrase", "MatchPrefix", "MatchSubstring") if hasattr(models, n))

    def one(cond: Any) -> str | None:
        if isinstance(cond, models.Filter):
            return unmatchable(cond, problem)
        if isinstance(cond, models.NestedCondition) and isinstance(cond.nested.key, str):
            array = payload_path(cond.nested.key)  # inner keys are relative to each element: authors + name = authors[].name
            if not _judgeable(array):
                return None
            return unmatchable(cond.nested.filter, lambda key, how, values: problem(f"{array}[].{key}", how, values))
        if not isinstance(cond, models.FieldCondition) or not isinstance(cond.key, str):
            return None
        key = payload_path(cond.key)
        if not _judgeable(key):
            return None
        if isinstance(cond.match, models.MatchAny) and not cond.match.any:
            return f"filter[{cond.key!r}]: an empty any-of list matches nothing"
        if isinstance(cond.range, models.DatetimeRange):
            return problem(key, "datetime", [])
        if cond.range is not None:
            return problem(key, "range", [])
        if isinstance(cond.match, models.MatchValue):
            return problem(key, "match", [cond.match.value])
        if isinstance(cond.match, models.MatchAny):
            return problem(key, "match", list(cond.match.any))
        if isinstance(cond.match, _TEXT_MATCHES):
            return problem(key, "text", [])
        return None

    for cond in _clause(obj, "must"):
        why = one(cond)
        if why:
            return why
    should = _clause(obj, "should")
    if should:
        whys = [one(c) for c in should]
        if all(whys):
            return whys[0] + ("" if len(whys) == 1 else f" (and each of the other {len(whys) - 1} should conditions can match nothing too)")
    least = getattr(obj, "min_should", None)
    if least is not None and least.conditions:
        whys = [one(c) for c in least.conditions]
        able = sum(w is None for w in whys)
        if least.min_count > len(whys):
            return f"min_should needs {least.min_count} of its {len(whys)} conditions, which no document can meet"
        if able < least.min_count:
            first = next(w for w in whys if w)
            return f"min_should needs {least.min_count} of its {len(whys)} conditions, but only {able} can match: {first}"
    return None


def parse_filter(obj: Any) -> Any:
    """A search filter as a :class:`qdrant_client.models.Filter`.

    Args:
        obj: ``None`` (no filter), the dict form of the module doc, or a
            ``qdrant_client.models.Filter`` (returned as it is after the key check).

    Returns:
        ``qdrant_client.models.Filter``, or ``None`` for ``None`` and ``{}``.

    Raises:
        QueryError: ``obj`` is of another type; a key is empty, not a string or starts with
            the reserved prefix ``_ag_``; a value is a float, ``None``, a nested list or another
            non-scalar; a list is empty or mixes types; a range is empty, has an unknown
            operator or a non-numeric bound.
    """
    from qdrant_client import models

    if obj is None:
        return None
    if isinstance(obj, models.Filter):
        _check_keys(obj, models)
        return obj
    if not isinstance(obj, dict):
        raise QueryError(
            f"filter must be a dict {{field: value | [values] | {{'gte': ..}}}} or a qdrant_client.models.Filter, not {type(obj).__name__}"
        )
    if not obj:
        return None
    return models.Filter(must=[_condition(k, v, models) for k, v in obj.items()])
