"""One validation path for documents and query texts, shared by the Python API
(:meth:`AntigravityEngine.ingest`, :meth:`~AntigravityEngine.search`) and the command line
(``antigravity index``), so both accept and refuse exactly the same input.

Documents
=========

A document is a dict ``{"_id", "text", "title"?, ...extra payload}`` (the BEIR corpus
line) or a tuple ``(id, text)`` / ``(id, text, payload dict)``.

**Ids.** Accepted: a non-empty ``str`` (not only whitespace), or an ``int`` (not ``bool``),
stored as its decimal string — so ``7`` and ``"7"`` are the *same* document (an upsert
across calls, a duplicate within one call). Refused, because they have no single stable
string form or are almost always a bug: ``bool`` (``True`` would become ``"True"``),
``float`` (``1.0`` vs ``1``, NaN), ``None``, lists/dicts, bytes, and strings that are not
valid Unicode (lone surrogates). A JSONL corpus read by the CLI goes through the same
rule: a JSON number ``7`` is accepted as ``"7"``, ``1.5``/``true``/``null`` are refused —
the CLI never turns an id the API would refuse into a string.

**Text.** ``text`` (and ``title`` when present) must be ``str`` and encodable as UTF-8
(no lone surrogates such as ``"\\ud800"``, which a JSON file can spell as an escape).
Text longer than the student's ``max_seq_length`` tokens is truncated by the model.

**Empty documents** (title and text blank after stripping) are accepted and stored —
real corpora have them — with the reserved payload flag ``_ag_empty: true``. They are
counted (``count()``, ``stats()["empty_documents"]``) but never appear in search results:
the store asks Qdrant for ``k + (number of empty documents)`` hits and drops the flagged
ones, so every search still returns ``k`` real documents when there are that many.

**Payload.** Extra keys (dict form) or the payload dict (tuple form) are stored with the
document. Keys must be ``str``; values must be JSON-serialisable (``str``, ``int``,
finite ``float``, ``bool``, ``None``, lists and dicts of those, with ``str`` keys) and
UTF-8-encodable — a Qdrant server stores payloads as JSON, so anything else would be
refused there or changed on the way. Refused values (numpy scalars/arrays, ``set``,
``bytes``, ``datetime``, NaN/inf, objects) give a :class:`DocumentError` naming the
document id and the key. **Reserved keys**: ``doc_id`` (the store keeps the original id
there) and every key starting with ``_ag_`` (engine flags); in the tuple form also
``_id``, ``title`` and ``text``, which would silently replace the document's own fields.

**Atomicity.** :meth:`AntigravityEngine.ingest` validates (and embeds) the whole call
before anything is written; the CLI validates the whole file first. A bad record anywhere
means nothing of that call or file is stored.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from antigravity.core.errors import DocumentError, QueryError

_INT64 = 2**63

EMPTY_FLAG = "_ag_empty"
RESERVED_PREFIX = "_ag_"
RESERVED_KEYS = frozenset({"doc_id"})
_TUPLE_RESERVED = frozenset({"_id", "title", "text"})


def _where(where: str | None) -> str:
    return f"{where}: " if where else ""


def _unicode_problem(text: str) -> str | None:
    """``None`` if ``text`` encodes as UTF-8, else a short description of the first bad character."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"is not valid Unicode ({exc.reason} {text[exc.start]!r} at position {exc.start})"
    return None


def validate_id(did: Any, *, where: str | None = None) -> str:
    """The stored string form of a document id (see the module doc for the rule).

    Raises:
        DocumentError: the id is of a refused type, empty, or not valid Unicode.
    """
    if isinstance(did, bool) or not isinstance(did, (str, int)):
        raise DocumentError(f"{_where(where)}invalid id {did!r} of type {type(did).__name__} (non-empty str or int expected)")
    try:
        sid = str(did)
    except ValueError:  # an int past Python's int-to-str digit limit (4,300 digits)
        raise DocumentError(f"{_where(where)}invalid id: an int of about {did.bit_length() * 0.30103:.0f} digits is too long to store as an id") from None
    if not sid.strip():
        raise DocumentError(f"{_where(where)}invalid id {did!r} (empty)")
    bad = _unicode_problem(sid)
    if bad:
        raise DocumentError(f"{_where(where)}invalid id {did!r}: {bad}")
    return sid


def _check_value(value: Any, did: str, key: str, where: str | None, depth: int = 0) -> None:
    if depth > 32:
        raise DocumentError(f"{_where(where)}document {did!r}: payload key {key!r} is nested deeper than 32 levels")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -_INT64 <= value < _INT64:  # Qdrant stores 64-bit integers; Edge would keep a float approximation instead
            raise DocumentError(f"{_where(where)}document {did!r}: payload key {key!r} holds an int that does not fit in 64 bits (store it as a string)")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DocumentError(f"{_where(where)}document {did!r}: payload key {key!r} is {value!r} (JSON has no NaN or inf)")
        return
    if isinstance(value, str):
        bad = _unicode_problem(value)
        if bad:
            raise DocumentError(f"{_where(where)}document {did!r}: payload key {key!r} {bad}")
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_value(item, did, key, where, depth + 1)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise DocumentError(f"{_where(where)}document {did!r}: payload key {key!r} holds a dict with a non-string key {k!r}")
            _check_value(v, did, f"{key}.{k}", where, depth + 1)
        return
    raise DocumentError(
        f"{_where(where)}document {did!r}: payload key {key!r} has a value of type {type(value).__name__}, "
        "which is not JSON-serialisable (str, int, float, bool, None, list, dict expected)"
    )


def validate_payload(extra: Any, did: str, *, where: str | None = None, tuple_form: bool = False) -> dict[str, Any]:
    """Check the extra payload of document ``did``; returns it as a new dict.

    Raises:
        DocumentError: not a dict, a non-string or reserved key, or a value that is not
            JSON-serialisable / not valid Unicode (names the id and the key).
    """
    if not isinstance(extra, dict):
        raise DocumentError(f"{_where(where)}document {did!r}: payload must be a dict, got {type(extra).__name__}")
    for key, value in extra.items():
        if not isinstance(key, str):
            raise DocumentError(f"{_where(where)}document {did!r}: payload key {key!r} is not a string")
        if key in RESERVED_KEYS or key.startswith(RESERVED_PREFIX) or (tuple_form and key in _TUPLE_RESERVED):
            raise DocumentError(f"{_where(where)}document {did!r}: payload key {key!r} is reserved")
        bad = _unicode_problem(key)
        if bad:
            raise DocumentError(f"{_where(where)}document {did!r}: payload key {key!r} {bad}")
        _check_value(value, did, key, where)
    return dict(extra)


def doc_text(doc: dict[str, str]) -> str:
    """Text embedded for a document: ``title + " " + text`` stripped, as BEIR and mteb do."""
    return (str(doc.get("title") or "") + " " + str(doc.get("text") or "")).strip()


def validate_document(doc: Any, *, index: int = 0, where: str | None = None) -> tuple[str, str, dict[str, Any], bool]:
    """Validate one document; returns ``(id, embedded text, payload, is_empty)``.

    ``embedded text`` is ``title + " " + text`` stripped (what the student embeds); the
    payload holds ``title``, ``text`` and the extra keys (plus the ``_ag_empty`` flag for
    an empty document). ``where`` (e.g. ``"corpus.jsonl:12"``) prefixes every message;
    ``index`` names the document when it has no usable id.

    Raises:
        DocumentError: anything the module doc refuses; the message names the id (or
            ``#index``), the key and ``where``.
    """
    tuple_form = False
    if isinstance(doc, dict):
        if "_id" not in doc or "text" not in doc:
            raise DocumentError(f"{_where(where)}document #{index} needs '_id' and 'text' keys, got keys {sorted(map(str, doc))}")
        did, text, title = doc["_id"], doc["text"], doc.get("title", "")
        title = "" if title is None else title
        extra = {k: v for k, v in doc.items() if k not in ("_id", "text", "title")}
    elif isinstance(doc, (tuple, list)) and len(doc) in (2, 3):
        did, text, title = doc[0], doc[1], ""
        extra = doc[2] if len(doc) == 3 else {}
        tuple_form = True
    else:
        raise DocumentError(f"{_where(where)}document #{index} must be a dict with '_id'/'text' or an (id, text) pair, got {type(doc).__name__}")
    try:
        sid = validate_id(did, where=where)
    except DocumentError as exc:
        raise DocumentError(str(exc).replace("invalid id", f"document #{index} has an invalid id", 1)) from None
    for name, value in (("text", text), ("title", title)):
        if not isinstance(value, str):
            raise DocumentError(f"{_where(where)}document {sid!r}: {name!r} must be a string, got {type(value).__name__}")
        bad = _unicode_problem(value)
        if bad:
            raise DocumentError(f"{_where(where)}document {sid!r}: {name!r} {bad}")
    payload = validate_payload(extra, sid, where=where, tuple_form=tuple_form)
    full = doc_text({"title": title, "text": text})
    empty = not full
    out = {"title": title, "text": text, **payload}
    if empty:
        out[EMPTY_FLAG] = True
    return sid, full, out, empty


def validate_query_text(query: Any, *, index: int = 0) -> str:
    """Check one query text (the same text rule as documents).

    Raises:
        QueryError: not a ``str``, empty/whitespace, or not valid Unicode.
    """
    if not isinstance(query, str):
        raise QueryError(f"query #{index} must be a string, got {type(query).__name__}")
    if not query.strip():
        raise QueryError(f"query #{index} is empty")
    bad = _unicode_problem(query)
    if bad:
        raise QueryError(f"query #{index} {bad}")
    return query


MAX_K = 2**31 - 1
"""The largest result count a search takes (Qdrant's ``limit`` is an unsigned machine integer;
a bound far above any collection this engine serves keeps a huge ``k`` a ``QueryError``)."""


def shown(value: Any) -> str:
    """``repr(value)`` for an error message; an int too long to print (Python's 4,300-digit
    limit) as its size instead."""
    try:
        return repr(value)
    except ValueError:
        return f"an integer of {value.bit_length()} bits"


def validate_k(k: Any) -> int:
    """Check a result count. Raises QueryError unless ``k`` is an ``int`` (not a bool) in
    ``[1, MAX_K]``."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise QueryError(f"k must be an integer >= 1 and <= {MAX_K}, got {shown(k)}")
    return k


def validate_query_vectors(raw: Any, dim: int | None) -> np.ndarray:
    """Check raw query vectors: returns them as ``(m, dim) float32``.

    Raises:
        QueryError: not 2-d, another dimension than ``dim`` (when known), NaN or inf, or an
            all-zero row (cosine similarity is undefined: every document would score 0 and
            the order would be arbitrary).
    """
    raw = np.asarray(raw, dtype=np.float32)
    if raw.ndim != 2 or (dim is not None and raw.shape[1] != dim):
        raise QueryError(f"query vectors must have shape (m, {dim}), got {raw.shape}")
    if not np.isfinite(raw).all():
        raise QueryError("query vectors contain NaN or inf")
    zero = np.flatnonzero(~raw.any(axis=1))
    if zero.size:
        raise QueryError(f"query vector #{zero[0]} is all zeros ({zero.size} such rows): cosine similarity is undefined")
    return raw


def validate_query_texts(texts: Any, n: int) -> list[str]:
    """Check the texts that go with ``n`` query vectors: a list (not a single string) of
    ``n`` valid query texts (:func:`validate_query_text`). Raises QueryError."""
    if isinstance(texts, (str, bytes)):
        raise QueryError("texts must be a list of query texts, got a single " + type(texts).__name__)
    try:
        texts = list(texts)
    except TypeError:
        raise QueryError(f"texts must be a list of query texts, got {type(texts).__name__}") from None
    if len(texts) != n:
        raise QueryError(f"{len(texts)} texts for {n} query vectors: one text per vector, in the same order")
    return [validate_query_text(t, index=i) for i, t in enumerate(texts)]
