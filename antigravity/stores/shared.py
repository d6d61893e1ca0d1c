"""Helpers shared by the store backends (:class:`~antigravity.stores.qdrant.QdrantStore`,
:class:`~antigravity.stores.edge.EdgeStore`), so both use one point-id scheme, one payload
layout and one ranking rule.

* Point ids: :func:`point_id` (``uuid5`` of the document id; the id itself is kept in the
  payload under ``doc_id``).
* Ranking (:func:`ranked_search`): hits are ordered by cosine score descending, then
  document id ascending; empty documents (payload flag ``_ag_empty``) are dropped; a tie
  that crosses the ``k``-th place is resolved by fetching more, so every backend returns
  the same ids for the same stored vectors.
* Validation before anything is written or searched (:func:`check_dim`, :func:`check_rows`,
  :func:`payload_rows`, :func:`check_missing`, :func:`check_search`), so both backends refuse
  the same bad input with the same typed error: a NaN/inf vector is never stored (it would be
  counted but never found) nor searched for (it would return nothing).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from antigravity.core.documents import EMPTY_FLAG, MAX_K, RESERVED_PREFIX, shown
from antigravity.core.errors import AntigravityError, DocumentError, QueryError, StoreError
from antigravity.core.files import check_permissions, make_private_dir
from antigravity.stores.base import RAW, SLOTS

Hit = tuple[str, float, dict]
"""One search result: ``(doc_id, cosine score, payload without doc_id)``."""

INDEX_SCHEMAS = ("keyword", "integer", "float", "bool")
"""Payload index types accepted by ``create_payload_index`` (Qdrant's ``PayloadSchemaType`` names)."""

MAX_DIM = 65536
"""Largest vector dimension a collection accepts (Qdrant's limit)."""

_NAMESPACE = uuid.UUID("6f1d7c52-3c1a-4d7e-9a55-2b8a3c0e9f11")


@contextlib.contextmanager
def backend_errors(head: Callable[[], str], catch: type[BaseException] = Exception,
                   finish: Callable[[str, BaseException], str] = lambda msg, exc: msg) -> Iterator[None]:
    """Turn a backend's error (qdrant-client, qdrant_edge) into a one-line StoreError
    ``"<head()>: <type>: <message>"``, passed through ``finish(msg, exc)`` (a store adds hints
    or masks secrets). The engine's own errors (QueryError, DocumentError, StoreError...) and
    interpreter exits pass unchanged."""
    try:
        yield
    except (AntigravityError, KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except catch as exc:  # noqa: BLE001 - backends raise many types
        raise StoreError(finish(f"{head()}: {type(exc).__name__}: {exc}".replace("\r", " ").replace("\n", " "), exc)) from exc


def point_id(doc_id: str) -> str:
    """Deterministic Qdrant point id (uuid5 string) for a document id."""
    return str(uuid.uuid5(_NAMESPACE, doc_id))


def open_folder(location: str, create: bool) -> list[str]:
    """Prepare the folder of an embedded store: create it private (0700) when missing, unless
    ``create`` is false. Returns the folder's permission warnings.

    Raises:
        StoreError: the folder does not exist and ``create`` is false, or cannot be created.
    """
    if not Path(location).expanduser().is_dir():
        if not create:
            raise StoreError(f"no store at {str(location)!r}: the folder does not exist (mistyped --data-dir?); nothing was created")
        make_private_dir(location)
    return check_permissions(location)


def id_list(doc_ids: Sequence[str], what: str) -> list[str]:
    """``doc_ids`` as a list of str. Raises TypeError for a bare string (it would be read as
    one id per character) or a non-str id."""
    if isinstance(doc_ids, (str, bytes)):
        raise TypeError(f"{what}: doc_ids must be a sequence of ids, not a single {type(doc_ids).__name__}")
    ids = list(doc_ids)
    for i, d in enumerate(ids):
        if not isinstance(d, str):
            raise TypeError(f"{what}: doc_ids[{i}] must be str, not {type(d).__name__}")
    return ids


def same_dim(collection: str, have: int | None, want: int) -> bool:
    """``True`` when the collection exists with ``want``-d vectors, ``False`` when it does not exist.

    Raises:
        StoreError: the collection holds vectors of another dimension.
    """
    if have is None:
        return False
    if have != want:
        raise StoreError(f"collection {collection!r} holds {have}-d vectors; the student makes {want}-d")
    return True


def check_slot(slot: str) -> None:
    """Raises StoreError unless ``slot`` is one of :data:`SLOTS`."""
    if slot not in SLOTS:
        raise StoreError(f"unknown slot {slot!r}")


def vector_names(with_vectors: bool | Sequence[str]) -> list[str]:
    """The vector names a ``with_vectors`` argument asks for (``True``: all three).

    Raises:
        StoreError: a name that is not :data:`RAW` or one of :data:`SLOTS`.
    """
    if with_vectors is True:
        return [RAW, *SLOTS]
    if not with_vectors:
        return []
    names = [with_vectors] if isinstance(with_vectors, str) else list(with_vectors)
    bad = [n for n in names if n not in (RAW, *SLOTS)]
    if bad:
        raise StoreError(f"unknown vector name(s) {bad} (known: {[RAW, *SLOTS]})")
    return names


def check_index(field: str, schema: str) -> None:
    """Validate ``create_payload_index`` arguments.

    Raises:
        QueryError: ``field`` is empty, not a string or reserved, or ``schema`` is not one of
            :data:`INDEX_SCHEMAS`.
    """
    if not isinstance(field, str) or not field:
        raise QueryError(f"payload index field must be a non-empty string, not {field!r}")
    if field.startswith(RESERVED_PREFIX):
        raise QueryError(f"payload index field {field!r} is reserved (keys starting with {RESERVED_PREFIX!r} are engine flags)")
    if schema not in INDEX_SCHEMAS:
        raise QueryError(f"unknown payload index schema {schema!r} (one of {', '.join(INDEX_SCHEMAS)})")


def check_upsert(doc_ids: Sequence[str], raw: Any, payloads: Sequence[Any], served: dict[str, Any]) -> None:
    """Validate the arguments of an upsert before anything is written.

    Raises:
        StoreError: ``served`` names an unknown slot, or the lengths of ids, raw rows, payloads
            and served rows differ.
    """
    for slot in served:
        check_slot(slot)
    n = len(doc_ids)
    if len(raw) != n or len(payloads) != n or any(len(m) != n for m in served.values()):
        raise StoreError(f"upsert: {n} ids, {len(raw)} raw rows, {len(payloads)} payloads, served rows {[len(m) for m in served.values()]}: counts differ")


def check_dim(dim: Any) -> int:
    """The vector dimension of a new collection as an int.

    Raises:
        StoreError: ``dim`` is not an integer in 1..65536 (a bool or a float is refused, not truncated).
    """
    if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, (int, np.integer)) or not 1 <= dim <= MAX_DIM:
        raise StoreError(f"ensure_collection: dim must be an integer in 1..{MAX_DIM}, got {dim!r}; nothing was created")
    return int(dim)


def require_collection(what: str, collection: str, dim: int | None, where: str) -> None:
    """Raises StoreError (naming ``what``) when the collection does not exist."""
    if dim is None:
        raise StoreError(f"{what}: collection {collection!r} does not exist yet ({where})")


def check_rows(what: str, mat: Any, ids: Sequence[str], dim: int | None, collection: str) -> np.ndarray:
    """``mat`` as ``(len(ids), dim) float32`` vectors to write for the documents ``ids``.

    Raises:
        StoreError: another shape (names ``what`` and both shapes).
        DocumentError: a row holds NaN or inf (names the documents; such a vector is counted
            but can never be found).
    """
    try:
        with np.errstate(over="ignore"):  # a float64 beyond float32 becomes inf, refused below
            arr = np.asarray(mat, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{what} is not a numeric ({len(ids)}, {dim}) array ({type(exc).__name__}); nothing was written") from None
    if arr.shape != (len(ids), dim):
        raise StoreError(f"{what} has shape {arr.shape}; collection {collection!r} needs ({len(ids)}, {dim}); nothing was written")
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if len(bad):
        named = [ids[i] for i in bad[:5]]
        raise DocumentError(f"{what}: non-finite (NaN or inf) vectors for {len(bad)} document(s), e.g. {named}; nothing was written")
    return arr


def check_missing(what: str, doc_ids: Sequence[str], stored: set[str]) -> None:
    """Raises StoreError naming the ids of ``doc_ids`` not in ``stored`` (e.g. ``set_served``)."""
    missing = [d for d in doc_ids if d not in stored]
    if missing:
        raise StoreError(f"{what}: {len(missing)} document id(s) not stored, e.g. {missing[:5]}; nothing was written")


def _jsonable(value: Any) -> Any:
    """``json.dumps`` default for payload values: NumPy scalars and arrays become Python values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def payload_rows(what: str, doc_ids: Sequence[str], payloads: Sequence[Any]) -> tuple[list[dict[str, Any]], str]:
    """The payloads to store (each with ``doc_id``) as JSON values — NumPy scalars and arrays
    become Python values, tuples lists, so every backend stores the same thing — and their
    JSON text.

    Raises:
        StoreError: a payload is not a dict, or not JSON (an unknown type, NaN or inf); names
            the document.
    """
    out = []
    for did, pl in zip(doc_ids, payloads):
        if not isinstance(pl, dict):
            raise StoreError(f"{what}: the payload of document {did!r} must be a dict, not {type(pl).__name__}; nothing was written")
        try:
            out.append(json.dumps({**pl, "doc_id": did}, default=_jsonable, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise StoreError(f"{what}: the payload of document {did!r} is not JSON ({exc}); nothing was written") from None
    text = "[" + ",".join(out) + "]"
    return json.loads(text), text


def check_k(k: Any) -> int:
    """The result count of a search as an int.

    Raises:
        QueryError: ``k`` is not an integer in ``[0, MAX_K]`` (a bool, a float or a string is
            refused, not truncated or parsed; a huge ``k`` is refused, not an overflow).
    """
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or not 0 <= k <= MAX_K:
        raise QueryError(f"search: k must be an integer >= 0 and <= {MAX_K}, got {shown(k)}")
    return int(k)


def check_search(vectors: Any, using: str, k: Any, dim: int | None, collection: str) -> tuple[np.ndarray, int]:
    """Validate search arguments (also when the collection does not exist): returns
    ``(vectors as (m, d) float32, k)``.

    Raises:
        StoreError: ``using`` is not a vector name, or ``vectors`` is not ``(m, dim)``.
        QueryError: ``k`` is not an integer >= 0, or a query vector holds NaN or inf (names its row).
    """
    vector_names([using])
    k = check_k(k)
    try:
        with np.errstate(over="ignore"):  # a float64 beyond float32 becomes inf, refused below
            arr = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise QueryError(f"search: query vectors are not a numeric (m, d) array ({type(exc).__name__})") from None
    if arr.ndim != 2 or (dim is not None and arr.shape[1] != dim):
        want = f"collection {collection!r} needs (m, {dim})" if dim is not None else "they must be an (m, d) array"
        raise StoreError(f"search: query vectors of shape {arr.shape}; {want}")
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if len(bad):
        raise QueryError(f"search: query vector row(s) {bad[:5].tolist()} of {len(arr)} contain NaN or inf")
    return arr, k


def split_payload(payload: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """``(doc_id, payload without doc_id)`` of a stored point's payload."""
    out = dict(payload or {})
    return str(out.pop("doc_id")), out


def retrieved(points: Sequence[Any], names: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """The result of ``retrieve`` from retrieved points (objects with ``.payload`` and ``.vector``):
    ``{doc_id: payload}``, or with ``names`` ``{doc_id: {"payload": ..., "vectors": {name: (d,)
    float32}}}`` holding only the ``names`` a point has."""
    out = {}
    for p in points:
        did, pl = split_payload(p.payload)
        if names is None:
            out[did] = pl
            continue
        vecs = p.vector if isinstance(p.vector, dict) else {}
        out[did] = {"payload": pl, "vectors": {n: np.asarray(vecs[n], dtype=np.float32) for n in names if vecs.get(n) is not None}}
    return out


def vector_batch(dim: int, names: Sequence[str], rows: Sequence[Any]) -> dict[str, np.ndarray]:
    """``{name: (b, dim) float32}`` from the vector dicts of ``b`` points (a missing vector is a zero row)."""
    out = {}
    for n in names:
        vals = [r.get(n) if isinstance(r, dict) else None for r in rows]
        out[n] = np.array([v if v is not None else np.zeros(dim) for v in vals], dtype=np.float32).reshape(len(rows), dim)
    return out


Fetch = Callable[[list[int], int], list[list[tuple[float, dict[str, Any]]]]]
"""``fetch(rows, limit)``: for each query row, at most ``limit`` raw hits ``(score, payload)``
best first, as the backend returns them (empty documents included)."""


def ranked_search(fetch: Fetch, n_queries: int, k: int, hidden: int) -> list[list[Hit]]:
    """Top-``k`` hits of ``n_queries`` queries, ordered by score descending then doc id
    ascending, empty documents left out.

    ``fetch`` is first asked for ``k + hidden + 1`` hits (``hidden``: the expected number of
    empty documents). A query is answered when its backend returned fewer hits than asked
    (nothing else matches), or when its ``k``-th real hit scores strictly above the lowest
    score fetched (nothing unfetched can tie or beat it); otherwise the limit doubles and
    that query is asked again — so ties across the ``k``-th place, and empty documents
    beyond the ``hidden`` estimate, never change the answer.
    """
    out: list[list[Hit]] = [[] for _ in range(n_queries)]
    if k <= 0:
        return out
    pending = list(range(n_queries))
    limit = k + max(0, hidden) + 1
    while pending:
        again = []
        for row, raw in zip(pending, fetch(pending, limit)):
            hits = []
            for score, payload in raw:
                if (payload or {}).get(EMPTY_FLAG):
                    continue
                did, pl = split_payload(payload)
                hits.append((did, float(score), pl))
            hits.sort(key=lambda h: (-h[1], h[0]))
            full = len(raw) >= limit
            floor = min(float(s) for s, _ in raw) if raw else 0.0
            if full and (len(hits) < k or hits[k - 1][1] <= floor):
                again.append(row)
            else:
                out[row] = hits[:k]
        pending = again
        limit *= 2
    return out
