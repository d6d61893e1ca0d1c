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
from typing import Any

from antigravity.core.documents import RESERVED_PREFIX
from antigravity.core.errors import QueryError

__all__ = ["RANGE_OPS", "field_conditions", "parse_filter"]

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


def _clauses(flt: Any) -> list:
    """The conditions directly under a Qdrant ``Filter`` (must, should, must_not, min_should)."""
    out = []
    for name in ("must", "should", "must_not"):
        part = getattr(flt, name, None)
        out.extend(part if isinstance(part, list) else [] if part is None else [part])
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


def field_conditions(obj: Any) -> list[tuple[str, str, list]]:
    """The field conditions of a filter in either form, as ``(key, kind, values)``: kind
    ``"match"`` (``values`` the matched scalars, one for a value, several for any-of) or
    ``"range"`` (``values`` empty). Qdrant ``Filter``\\ s are walked through every clause and
    nested ``Filter``; conditions of other kinds (``is_empty``, ``is_null``, ``has_id``,
    ``nested`` — whose keys are relative to an array) and malformed dict entries (which
    :func:`parse_filter` names) are left out. Used to check a filter against the stored
    payload keys before a search (:meth:`DocumentCollection.check_filter`)."""
    from qdrant_client import models

    out: list[tuple[str, str, list]] = []
    if isinstance(obj, dict):
        for key, cond in obj.items():
            if not isinstance(key, str):
                continue
            if isinstance(cond, dict):
                out.append((key, "range", []))
            else:
                out.append((key, "match", list(cond) if isinstance(cond, (list, tuple)) else [cond]))
        return out
    if not isinstance(obj, models.Filter):
        return out
    for cond in _clauses(obj):
        if isinstance(cond, models.Filter):
            out.extend(field_conditions(cond))
        elif isinstance(cond, models.FieldCondition) and isinstance(cond.key, str):
            if cond.range is not None:
                out.append((cond.key, "range", []))
            elif isinstance(cond.match, models.MatchValue):
                out.append((cond.key, "match", [cond.match.value]))
            elif isinstance(cond.match, models.MatchAny):
                out.append((cond.key, "match", list(cond.match.any)))
    return out


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
