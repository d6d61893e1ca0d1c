"""The stored documents: validated, embedded and written ingest; payload and raw-vector
reads; the manifest checks that keep one collection to one student."""

from __future__ import annotations

import difflib
import logging
import threading
from collections.abc import Mapping
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from antigravity.core.documents import RESERVED_PREFIX, doc_text, validate_document, validate_id
from antigravity.core.errors import DocumentError, EmptyCorpusError, ManifestError, QueryError
from antigravity.serving.counters import Counters
from antigravity.stores.filters import unmatchable
from antigravity.stores.manifest import PAYLOAD_FIELDS, CollectionManifest, describe_student, identity_differences
from antigravity.stores.qdrant import RAW

logger = logging.getLogger("antigravity.engine")

Item = tuple[str, str, dict[str, Any], bool]  # validated (id, text, payload, is_empty)


def _public(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if not k.startswith(RESERVED_PREFIX)}


def _kind(value: Any) -> str:
    """The kind of a JSON payload value, as :meth:`DocumentCollection.payload_fields` records it."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return "object"


def _add_fields(fields: dict[str, set[str]], payload: Mapping[str, Any], prefix: str = "") -> None:
    """Record the keys of ``payload`` (reserved keys skipped; nested objects as dotted keys,
    objects inside an array as ``key[].sub`` — Qdrant's path syntax for them; a key holding
    ``.``, ``[``, ``]`` or ``"`` itself quoted, ``"a.b"``, as Qdrant needs it; arrays (lists or
    tuples) inside arrays flattened into the key's elements)."""
    for k, v in payload.items():
        if not prefix and k.startswith(RESERVED_PREFIX):
            continue
        key = prefix + (f'"{k}"' if any(c in k for c in '.[]"') else k)  # Qdrant reads a bare "a.b" as a path: a literal one is quoted
        _add_values(fields, key, v, in_array=False)


def _add_values(fields: dict[str, set[str]], key: str, v: Any, *, in_array: bool) -> None:
    kinds = fields.setdefault(key, set())
    if isinstance(v, (list, tuple)):
        for x in v:
            _add_values(fields, key, x, in_array=True)
    elif isinstance(v, Mapping):
        kinds.add("object")
        _add_fields(fields, v, key + ("[]." if in_array else "."))
    elif v is not None:
        kinds.add(_kind(v))


def _merged(*maps: Mapping[str, Any]) -> dict[str, set[str]]:
    """A new key -> kinds map holding every key and kind of ``maps`` (kinds as sets or JSON
    lists); never one a reader may be iterating."""
    out: dict[str, set[str]] = {}
    for m in maps:
        for k, v in m.items():
            out.setdefault(k, set()).update(v)
    return out


def _as_stored(fields: Mapping[str, set[str]]) -> dict[str, list[str]]:
    """``fields`` as the manifest keeps it (sorted keys, sorted kind lists)."""
    return {k: sorted(v) for k, v in sorted(fields.items())}


_ID_FIELD = {"doc_id": {"str"}}  # ids are stored as strings: 7 is "7"


def _condition_problem(fields: dict[str, set[str]], key: str, how: str, values: list) -> str | None:
    """Why one field condition (:func:`~antigravity.stores.filters.unmatchable`) can match no
    document under ``fields`` (:meth:`DocumentCollection.payload_fields`), or ``None``."""
    kinds = fields.get(key)
    if kinds is None:
        near = difflib.get_close_matches(key, sorted(fields), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else f"; stored keys: {sorted(fields)[:20]}"
        return f"filter key {key!r} is in no stored document{hint}"
    if how == "range" and not kinds & {"int", "float"}:
        return f"filter[{key!r}]: a range needs numbers, but {key!r} holds {sorted(kinds)} values"
    if how == "text" and "str" not in kinds:
        return f"filter[{key!r}]: a text match needs text, but {key!r} holds {sorted(kinds)} values"
    if how == "datetime" and "str" not in kinds:
        return f"filter[{key!r}]: a datetime range needs RFC 3339 strings, but {key!r} holds {sorted(kinds)} values"
    for v in values if how == "match" else ():
        kind = _kind(v)
        if kind in ("str", "int", "bool") and kind not in kinds:
            return f"filter[{key!r}]: {v!r} is {kind}, but {key!r} holds {sorted(kinds)} values, so it can match nothing"
    return None


def _as_list(doc_ids: Any) -> list[Any]:
    """``doc_ids`` as a list of ids. Raises DocumentError for a non-iterable, and for text,
    bytes or a mapping — iterable, but never a list of ids (``b"\\x05\\x06"`` would be ids 5
    and 6)."""
    if isinstance(doc_ids, (str, bytes, bytearray, memoryview, Mapping)):
        raise DocumentError(f"expected a list of document ids, got {type(doc_ids).__name__} {doc_ids!r:.60}")
    try:
        return list(doc_ids)
    except TypeError:
        raise DocumentError(f"expected a list of document ids, got {type(doc_ids).__name__}") from None


class DocumentCollection:
    """Documents of one collection: ingest, ``get``, raw vectors and payload texts.

    Args:
        store: the vector store. encoder: the student (``encode``, ``dim``).
        manifest: the collection manifest (``None`` in memory). identity: ``() -> dict``
            the running student's identity. where: ``() -> str`` the store, for messages.
        settings: ``() -> Settings`` (read live: ``store.store_text``, batch sizes).
        served_vectors: ``raw (n, d) -> {slot: (n, d)}`` what each served slot stores.
        counters / write_lock: shared with the engine. on_write: ``ids -> None`` after a batch.
    """

    def __init__(self, store: Any, encoder: Any, manifest: CollectionManifest | None, identity: Callable[[], dict[str, Any]],
                 where: Callable[[], str], settings: Callable[[], Any], served_vectors: Callable[[np.ndarray], dict[str, np.ndarray]],
                 counters: Counters, write_lock: Any, on_write: Callable[[list[str]], None]) -> None:
        self.store, self.encoder, self.manifest = store, encoder, manifest
        self._identity, self._where, self._settings = identity, where, settings
        self._served_vectors, self._counters, self.write_lock, self._on_write = served_vectors, counters, write_lock, on_write
        self.backend = "local"  # the store backend recorded in a new manifest (set by the engine)
        self._raw_cache: tuple[list[str], np.ndarray] | None = None
        self._generation = 0  # writes so far (see _invalidate)
        self._cache_lock = threading.Lock()
        self._payload_cache: dict[str, dict[str, str]] | None = None
        self._fields: dict[str, set[str]] | None = None  # payload key (dotted) -> kinds of value stored; loaded on the first filter
        self._fields_scanned = False  # whether _fields came from a scan of the store in this process (authoritative)

    # -- ingest --------------------------------------------------------------------------
    def ingest(self, documents: Iterable[Any], *, batch_size: int | None = None, show_progress: bool = False) -> int:
        """Validate every document, embed all, then write in batches (see
        :meth:`antigravity.engine.AntigravityEngine.ingest` for the contract)."""
        bs = self._settings().store.upsert_batch_size if batch_size is None else batch_size
        if isinstance(bs, bool) or not isinstance(bs, int) or bs < 1:
            raise DocumentError(f"batch_size must be >= 1, got {bs}")
        items: list[Item] = []
        seen: set[str] = set()
        for i, doc in enumerate(documents):
            item = validate_document(doc, index=i)
            if item[0] in seen:
                raise DocumentError(f"duplicate document id {item[0]!r} in one ingest call")
            seen.add(item[0])
            items.append(item)
        if not items:
            raise EmptyCorpusError("ingest was given no documents")
        return self.ingest_validated(items, bs, show_progress)

    def ingest_validated(self, items: list[Item], bs: int, show_progress: bool = False) -> int:
        """Embed all of ``items`` (validated), then write them in batches of ``bs``; one rich
        progress bar when ``show_progress``."""
        self._check_manifest_for_write()
        ids = [it[0] for it in items]
        progress = None
        if show_progress:
            from rich.progress import Progress

            progress = Progress()
            progress.start()
            task = progress.add_task("embed + write", total=2 * len(items))
        try:
            step = max(bs, 512)
            raw = np.empty((len(items), self.encoder.dim), dtype=np.float32)  # filled in place: one copy of the vectors, not parts + their concatenation
            for i in range(0, len(items), step):
                part = np.asarray(self.encoder.encode([it[1] for it in items[i : i + step]]), dtype=np.float32)
                want = (min(step, len(items) - i), self.encoder.dim)
                if part.shape != want:
                    raise DocumentError(f"the student returned shape {part.shape} for {want[0]} documents (expected {want}); nothing of this call was written")
                raw[i : i + step] = part
                if progress:
                    progress.update(task, advance=len(part))
            if not np.isfinite(raw).all():
                bad = [ids[i] for i in np.where(~np.isfinite(raw).all(axis=1))[0]]
                raise DocumentError(f"the student produced non-finite vectors for documents {bad[:5]}; nothing of this call was written")
            if not raw.any(axis=1).all():  # cosine similarity is undefined: such a document would score 0 for every query
                bad = [ids[i] for i in np.where(~raw.any(axis=1))[0]]
                raise DocumentError(f"the student produced all-zero vectors for documents {bad[:5]}; nothing of this call was written")
            written = 0
            n_empty = sum(1 for it in items if it[3])
            for start in range(0, len(items), bs):
                written += self._write_batch(items[start : start + bs], raw[start : start + bs])
                if progress:
                    progress.update(task, advance=min(bs, len(items) - start))
        finally:
            if progress:
                progress.stop()
            self._after_write()
        if n_empty:
            self._counters.count("empty_documents_ingested", n_empty)
            logger.info("ingest: %d empty documents stored (never returned by search)", n_empty)
        return written

    def _check_manifest_for_write(self) -> None:
        """Ingest refuses to mix students: re-read the manifest and compare (cheap)."""
        if self.manifest is None:
            return
        m = self.manifest.read()
        if m is None:
            if self.store.dim is not None:
                raise ManifestError(f"the manifest {self.manifest.path} of collection {self.store.collection!r} vanished while the engine ran; nothing was written")
            return
        if self.store.dim is None and m.get("backend") != self.backend:  # nothing stored yet: the manifest follows the backend
            with self.write_lock:
                m = self.manifest.read() or m
                m["backend"] = self.backend
                self.manifest.write(m)
        diffs = identity_differences(m["student"], self._identity())
        if diffs:
            raise ManifestError(
                f"collection {self.store.collection!r} was built by student {describe_student(m['student'])}; this engine's student is "
                f"{describe_student(self._identity())} (differs in {', '.join(diffs)}); nothing was written"
            )

    def _after_write(self) -> None:
        """After an ingest call: recount empties; raise the manifest's document lower bound."""
        if self.store.dim is None:
            return
        try:
            self.store.n_empty = self.store.count_empty()
            if self.manifest is not None:
                with self.write_lock:  # a read-modify-write of the manifest: never interleaved with _note_fields'
                    m = self.manifest.read()
                    n = self.store.count()
                    if m is not None and n > m["documents"]:
                        m["documents"] = n
                        self.manifest.write(m)
        except Exception as exc:  # noqa: BLE001 - the documents are stored; the bound only lags
            logger.warning("could not update the collection manifest after ingest: %s", exc)

    def _write_batch(self, batch: list[Item], raw: np.ndarray) -> int:
        ids = [b[0] for b in batch]
        keep_text = self._settings().store.store_text
        payloads = [b[2] if keep_text else {k: v for k, v in b[2].items() if k not in ("title", "text")} for b in batch]
        with self.write_lock:
            if self.store.dim is None and self.manifest is not None and not self.manifest.exists():
                # the manifest is written before the collection: a crash between the two
                # leaves a manifest with 0 documents and no collection, which opens fine
                self.manifest.create(self.store.collection, self._where(), self._identity(), 0, backend=self.backend, payload_fields={})
            self.store.ensure_collection(self.encoder.dim)
            self._note_fields(payloads)  # before the write: the recorded keys are never fewer than the stored ones
            served = self._served_vectors(raw)
            self.store.n_empty += sum(1 for b in batch if b[3])  # over-fetch until recounted
            try:
                self.store.upsert(ids, raw, payloads, served)
            finally:  # a failed write may be partly applied: never keep a cache of before it
                self._invalidate()
            self._on_write(ids)
            self._counters.count("documents_ingested", len(ids))
        return len(ids)

    # -- filters -------------------------------------------------------------------------
    def payload_fields(self) -> dict[str, set[str]]:
        """Every payload key any stored document has (dotted for nested objects, ``key[].sub``
        for objects in an array, ``doc_id`` included) with the kinds of value stored under it
        (``str``, ``int``, ``float``, ``bool``, ``object``; array elements count as their own
        kind). Kept in the manifest (:data:`~antigravity.stores.manifest.PAYLOAD_FIELDS`,
        written by ingest *before* each batch is stored, so it never lists fewer keys than the
        store holds), so opening an engine costs no scan, and reading it takes no lock (a
        search never waits for a promotion). A manifest without it (written before it, or by
        ``adopt``) and a store without a manifest (``:memory:``) are scanned once, O(documents),
        under the write lock, and the result written. A delete leaves keys listed (a filter on
        them then matches nothing, as it should). Costs: ``benchmarks/filter_cost.py``; payloads
        whose *keys* are data (a new key per document) rewrite the map with every batch."""
        fields = self._fields
        if fields is None:
            m = self.manifest.read() if self.manifest is not None else None
            stored = m.get(PAYLOAD_FIELDS) if m is not None else None
            if stored is not None:
                fields = self._fields = _merged(stored, _ID_FIELD)
            else:
                fields = self._scanned()
        return fields

    def _scanned(self) -> dict[str, set[str]]:
        """The map from one scan of the store (under ``write_lock``; once per process: later
        calls return the map kept since)."""
        with self.write_lock:
            if not self._fields_scanned:
                self._fields = _merged(self._scan_fields(), _ID_FIELD)
            return self._fields

    def _scan_fields(self) -> dict[str, set[str]]:
        """The payload keys and kinds by one scan of the store (caller holds ``write_lock``),
        written to the manifest when there is one and the store has a collection."""
        fields: dict[str, set[str]] = {}
        for _, p in self.store.iter_payloads():
            _add_fields(fields, p)
        self._fields_scanned = True
        if self.manifest is not None and self.store.dim is not None:
            try:
                m = self.manifest.read()
                if m is not None:
                    m[PAYLOAD_FIELDS] = _as_stored(fields)
                    self.manifest.write(m)
            except Exception as exc:  # noqa: BLE001 - the map is right in memory; the next open scans again
                logger.warning("could not record the payload keys in the collection manifest: %s", exc)
        return fields

    def _note_fields(self, payloads: list[dict[str, Any]]) -> None:
        """Add the keys of ``payloads`` (about to be stored; caller holds ``write_lock``) to the
        map in memory and, when it lists any new key or kind, to the manifest's — unless the
        manifest does not keep the map yet (the first filter scans)."""
        new: dict[str, set[str]] = {}
        for p in payloads:
            _add_fields(new, p)
        if self._fields is not None:
            self._fields = _merged(self._fields, new)
        if self.manifest is None:
            return
        m = self.manifest.read()
        stored = m.get(PAYLOAD_FIELDS) if m is not None else None
        if stored is None:
            return
        merged = _merged(stored, new)
        if merged != _merged(stored):
            m[PAYLOAD_FIELDS] = _as_stored(merged)
            self.manifest.write(m)

    def check_filter(self, flt: Any) -> None:
        """Refuse a filter — the dict form or a ``qdrant_client.models.Filter`` — that can match
        nothing because of what it names (:func:`~antigravity.stores.filters.unmatchable`: in
        the dict form or a ``must``, in every ``should``, in more ``min_should`` conditions than
        ``min_count`` allows, or inside a ``nested`` condition): a key in no stored payload, or a
        value of a kind never stored under its key (``{"year": "2005"}`` where years are ints; a
        numeric range on text; a datetime range on numbers). Keys and kinds come from
        :meth:`payload_fields`; before refusing, a map read from the manifest is confirmed by one
        scan of the store per process (a manifest older than the store never refuses a stored
        key), and a map from that scan takes in what the manifest has gained since (another
        engine on the same folder). Raises QueryError naming the key, the value and what is
        stored."""
        def problem(fields):
            return unmatchable(flt, lambda key, how, values: _condition_problem(fields, key, how, values))

        why = problem(self.payload_fields())
        if why is None:
            return
        if not self._fields_scanned:
            fields = self._scanned()
        else:
            with self.write_lock:  # a refusal only: never interleaved with ingest's _note_fields
                m = self.manifest.read() if self.manifest is not None else None
                fields = self._fields = _merged(self._fields or {}, (m or {}).get(PAYLOAD_FIELDS) or {})
        why = problem(fields)
        if why is not None:
            raise QueryError(why)

    # -- reads ---------------------------------------------------------------------------
    def count(self) -> int:
        """Number of stored documents (empty documents included)."""
        return self.store.count()

    def get(self, doc_ids: Any, *, with_vectors: bool = False, served_slot: str = RAW) -> Any:
        """Payloads (reserved keys removed) of one id (payload or ``None``) or of a list of ids
        (``{id: payload}`` of those found); with ``with_vectors`` each record is
        ``{"payload", "vectors": {"raw", "served"}}`` (``(d,) float32``; ``served`` from
        ``served_slot``). Raises DocumentError for an invalid id."""
        single = isinstance(doc_ids, (str, int)) and not isinstance(doc_ids, bool)
        ids = [validate_id(doc_ids)] if single else [validate_id(d, where=f"id #{i}") for i, d in enumerate(_as_list(doc_ids))]
        found = self.store.retrieve(ids, with_vectors=with_vectors)
        out = {}
        for d, rec in found.items():
            if with_vectors:
                vecs = rec["vectors"]
                out[d] = {"payload": _public(rec["payload"]), "vectors": {"raw": vecs[RAW], "served": vecs.get(served_slot, vecs[RAW])}}
            else:
                out[d] = _public(rec)
        return out.get(ids[0]) if single else out

    def delete(self, doc_ids: Any) -> int:
        """Delete ``doc_ids`` (unknown ids ignored) from the store — every served slot at
        once, since the slots are named vectors of one point; returns how many existed. The
        manifest's document lower bound is lowered *before* the delete, so a crash between
        the two never makes a store look truncated. Raises DocumentError / StoreError."""
        if isinstance(doc_ids, (str, int)):
            raise DocumentError(f"delete takes a list of ids, got a single id {doc_ids!r}")
        ids = list(dict.fromkeys(validate_id(d, where=f"id #{i}") for i, d in enumerate(_as_list(doc_ids))))
        if not ids:
            return 0
        with self.write_lock:
            present = list(self.store.retrieve(ids))
            if not present:
                return 0
            if self.manifest is not None:
                m = self.manifest.read()
                bound = self.store.count() - len(present)
                if m is not None and m["documents"] > bound:
                    m["documents"] = max(bound, 0)
                    self.manifest.write(m)
            try:
                self.store.delete(present)
                self.store.n_empty = self.store.count_empty()
            finally:  # as in _write_batch: a delete that failed part way may have removed some
                self._invalidate()
            self._on_write(present)
            self._counters.count("documents_deleted", len(present))
        return len(present)

    def _invalidate(self) -> None:
        """After a write (caller holds ``write_lock``): drop the caches of :meth:`raw_matrix`
        and :meth:`document_fields`, and count a generation, so a scan that ran across the write
        is returned to its caller but never cached."""
        with self._cache_lock:
            self._generation += 1
            self._raw_cache = None
            self._payload_cache = None

    def raw_matrix(self) -> tuple[list[str], np.ndarray]:
        """All stored raw document vectors: ``(ids, (n, d) float32)`` (cached until the next
        write; a scan a write overlapped is not cached)."""
        cached, generation = self._raw_cache, self._generation
        if cached is not None:
            return cached
        ids: list[str] = []
        mats: list[np.ndarray] = []
        for b_ids, b in self.store.iter_vectors((RAW,)):
            ids.extend(b_ids)
            mats.append(b[RAW])
        dim = self.store.dim or self.encoder.dim
        result = (ids, np.concatenate(mats) if mats else np.zeros((0, dim), np.float32))
        with self._cache_lock:  # not write_lock: a reader never waits for a promotion
            if self._generation == generation:  # no write since the scan began: it is the store's state
                self._raw_cache = result
        return result

    def document_fields(self, doc_id: str) -> dict[str, str]:
        """``{"title", "text"}`` of a stored document. Raises DocumentError for an unknown id."""
        cache, generation = self._payload_cache, self._generation
        if cache is None:
            cache = {d: {"title": str(p.get("title", "")), "text": str(p.get("text", ""))} for d, p in self.store.iter_payloads()}
            with self._cache_lock:
                if self._generation == generation:  # as in raw_matrix: a scan a write overlapped is used once, not cached
                    self._payload_cache = cache
        try:
            return cache[doc_id]
        except KeyError:
            raise DocumentError(f"unknown document id {doc_id!r}") from None

    def document_texts(self, doc_ids: Sequence[str]) -> list[str]:
        """Embedded text (``title + " " + text``) of stored documents.
        Raises DocumentError when the store keeps no text (``store.store_text = false``)."""
        if not self._settings().store.store_text:
            raise DocumentError("documents were stored without text (store.store_text = false); the teacher cannot read them")
        return [doc_text(self.document_fields(d)) for d in doc_ids]
