"""``AntigravityEngine``: the public API — ingest documents, search, adapt.

Typical use in a search backend::

    from antigravity import AntigravityEngine

    with AntigravityEngine(data_dir="/var/lib/search", student__name="all-MiniLM-L6-v2") as engine:
        engine.ingest([{"_id": "d1", "title": "Aspirin", "text": "Aspirin reduces fever."}])
        for hit in engine.search("does aspirin lower a fever?", k=5):
            print(hit.doc_id, hit.score, hit.payload["title"])

Thread safety: ``search``/``search_batch`` may run from many threads at once, alongside one
``ingest`` and an adaptation step; each search is answered by exactly one adapter version
(see :mod:`antigravity.stores.qdrant` for the double-buffered served vectors).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from antigravity.adaptation.adapter import ResidualAdapter
from antigravity.datasets import doc_text
from antigravity.serving.checkpoints import AdapterRegistry, registry_for, settings_hash
from antigravity.core.documents import RESERVED_PREFIX, validate_document, validate_query_text
from antigravity.core.errors import CheckpointError, DocumentError, EmptyCorpusError, ManifestError, QueryError, StoreError
from antigravity.stores.manifest import CollectionManifest, describe_student, identity_differences, student_identity
from antigravity.encoders.model import Encoder
from antigravity.settings import Settings, mask_url
from antigravity.core.files import check_permissions, make_private_dir
from antigravity.stores.qdrant import RAW, SLOTS, QdrantStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchHit:
    """One search result: document id, cosine ``score`` in [-1, 1], stored ``payload``."""

    doc_id: str
    score: float
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ServedVersion:
    """What answers searches: adapter ``version`` (0 = frozen student), the named vector
    ``slot`` holding ``doc_adapter(raw)``, and the ``query_adapter`` applied to queries
    (``None`` = identity). Swapped as one reference, so a search sees one version."""

    version: int = 0
    slot: str = RAW
    doc_adapter: ResidualAdapter | None = None
    query_adapter: ResidualAdapter | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrafficRecord:
    """A served query kept for label-free signals: raw query vector ``(d,) float32``, the
    indices-free top-k doc ids and their scores."""

    query_vector: np.ndarray
    doc_ids: list[str]
    scores: np.ndarray
    text: str | None = None


def _settings_dict(settings: Settings) -> dict[str, Any]:
    """``settings`` as a plain dict, secrets unmasked (to rebuild a validated copy)."""
    d = settings.model_dump()
    if settings.store.api_key is not None:
        d["store"]["api_key"] = settings.store.api_key.get_secret_value()
    return d


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class AntigravityEngine:
    """Adaptive retrieval engine: a student encoder, a Qdrant store and an adapter.

    Construct from a :class:`Settings` object, keyword overrides (nested with ``__``, e.g.
    ``store__location=":memory:"``), or both (keywords win)::

        AntigravityEngine(Settings.load("config/fast.toml"), mode="baseline")

    Opening a persistent store checks it (see :mod:`antigravity.stores.manifest`): the collection
    manifest must name the running student, and store, manifest, adapter registry and
    active version must agree; anything else is refused with a one-line typed error naming
    the file and the recovery command — damage is never served as an empty store.

    Args:
        encoder / teacher: objects to use instead of the configured student / teacher.
        create: ``False`` for read-only use (``antigravity search``/``get``): a missing data
            folder or store is an error and nothing is created.
        reindex: a deliberate re-index (e.g. another student): drop the collection, move its
            adapters aside (``<dir>.replaced-<time>``), write a new manifest on the first
            ingest. Never needed otherwise.
        adopt: write a manifest for the running student for a collection that has none (made
            before manifests existed). Only when you know this student built it.

    Raises:
        ConfigurationError: invalid settings. StoreError: store unreachable/locked, or
        missing with ``create=False``. ManifestError (a StoreError): another student built
        the collection, or the store is damaged. CheckpointError: the active adapter was
        trained for another student, or its files are damaged.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        encoder: Encoder | None = None,
        teacher: Any = None,
        create: bool = True,
        reindex: bool = False,
        adopt: bool = False,
        **overrides: Any,
    ) -> None:
        if settings is None:
            settings = Settings.load(**overrides)
        elif overrides:
            merged = _settings_dict(settings)
            for key, value in overrides.items():
                node = merged
                parts = key.replace(".", "__").split("__")
                for p in parts[:-1]:
                    node = node.setdefault(p, {})
                node[parts[-1]] = value
            base = settings
            settings = Settings.load(**{k: v for k, v in merged.items()})
            settings._config_file = base._config_file
            settings._overrides = {**base._overrides, **overrides}
        self.settings = settings
        s = settings
        self.encoder = encoder or Encoder(
            s.student.name,
            cache_dir=s.resolved_cache_dir,
            batch_size=s.student.batch_size,
            bf16=s.student.bf16,
            max_seq_length=s.student.max_seq_length,
        )
        in_memory = not s.store.url and s.resolved_store_location == ":memory:"
        data_dir = Path(s.data_dir).expanduser()
        self.permission_warnings: list[str] = []
        if not in_memory:
            if not data_dir.is_dir():
                if not create:
                    raise StoreError(f"data folder {str(data_dir)!r} does not exist (mistyped --data-dir?); nothing was created")
                make_private_dir(data_dir)
            self.permission_warnings = check_permissions(data_dir)
        self.store = QdrantStore(
            s.resolved_store_location if not s.store.url else None,
            url=s.store.url,
            api_key=s.store.api_key.get_secret_value() if s.store.api_key else None,
            collection=s.store.collection,
            timeout_s=s.store.timeout_s,
            create_options={k: getattr(s.store, k) for k in ("shard_number", "replication_factor", "write_consistency_factor")},
            create=create,
        )
        self.permission_warnings += [w for w in self.store.permission_warnings if w not in self.permission_warnings]
        if s.adaptation.rank > self.encoder.dim:
            from antigravity.core.errors import ConfigurationError

            self.store.close()
            raise ConfigurationError(
                f"adaptation.rank = {s.adaptation.rank}: must be <= the student dimension {self.encoder.dim} ({self.encoder.name})"
            )
        self._served = ServedVersion()
        self._write_lock = threading.RLock()
        self._readers_cv = threading.Condition()
        self._readers: collections.Counter[str] = collections.Counter()
        self._traffic: collections.deque[TrafficRecord] = collections.deque(maxlen=s.adaptation.max_signals)
        self._stats: dict[str, Any] = collections.defaultdict(int)
        self._stats_lock = threading.Lock()  # every counter update goes through _count (searches run in many threads)
        self._closed = False
        self._raw_cache: tuple[list[str], np.ndarray] | None = None
        self._slot_content: dict[str, ServedVersion] = {}  # which version each served slot holds
        self._payload_cache: dict[str, dict[str, str]] | None = None
        self._validation = None
        self._validation_texts: list[str] | None = None  # dev query texts (offline distillation refit)
        self._versions: dict[int, ServedVersion] = {0: self._served}
        self._version_counter = 0
        self._history: list[int] = [0]  # promoted versions, oldest first
        self._cycles: list[Any] = []
        self._cycle_lock = threading.Lock()
        self._signals_at_last_cycle = 0
        self._teacher_source = teacher
        self._teacher_helper = None
        self._fusion_lock = threading.Lock()
        self._teacher_doc_vectors: dict[str, np.ndarray] = {}  # serving fusion: doc id -> teacher vector
        self._guidance_status: str | None = None  # hybrid cycle: "used" or "failed:<kind>"
        self._auto_thread: threading.Thread | None = None
        self._identity: dict[str, Any] | None = None
        self.in_memory = in_memory
        # the registry folder of this store and collection also holds the collection manifest
        self._registry_view: AdapterRegistry | None = None if in_memory else registry_for(s)
        self.manifest: CollectionManifest | None = None if in_memory else CollectionManifest(self._registry_view.dir)
        self.adapters: AdapterRegistry | None = registry_for(s) if s.adaptation.persist and not in_memory else None
        try:
            if reindex and not in_memory:
                self._drop_for_reindex()
            if not in_memory:
                self._open_checks(adopt=adopt)
        except BaseException:
            self.store.close()
            raise

    # -- opening: manifest and integrity ------------------------------------------------
    @property
    def student_identity(self) -> dict[str, Any]:
        """The running student's identity (see :func:`antigravity.stores.manifest.student_identity`)."""
        if self._identity is None:
            self._identity = student_identity(self.encoder)
        return self._identity

    def _store_where(self) -> str:
        return mask_url(self.settings.store.url) if self.settings.store.url else str(self.store.location)

    def _recovery(self) -> str:
        return f"`antigravity index CORPUS --data-dir {self.settings.data_dir} --reindex` (API: reindex=True)"

    def _drop_for_reindex(self) -> None:
        """``reindex=True``: drop the collection, move its adapters and manifest aside."""
        import datetime as _dt

        view = self._registry_view
        assert view is not None
        self.store.drop_collection()
        if view.dir.exists():
            stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
            aside = view.dir.with_name(f"{view.dir.name}.replaced-{stamp}")
            view.dir.rename(aside)
            logger.warning("re-index: collection %r dropped; its adapters and manifest were moved to %s", self.store.collection, aside)
        self._count("reindexed")

    def _open_checks(self, adopt: bool = False) -> None:
        """Cross-check manifest, store, adapter registry and active version; restore the
        active adapter. Raises ManifestError / CheckpointError (nothing is changed)."""
        assert self.manifest is not None and self._registry_view is not None
        view = self._registry_view
        versions = view.versions()
        active = view.active()  # CheckpointError if active.json is malformed
        ckpt = self._load_active(active) if self.adapters is not None else None  # student check of the served adapter
        manifest = self.manifest.read()
        exists = self.store.dim is not None
        n = self.store.count() if exists else 0
        where = self.store.describe()
        coll = self.store.collection
        if manifest is None:
            if exists and adopt:
                self.manifest.create(coll, self._store_where(), self.student_identity, n)
                logger.warning("adopted collection %r (%d documents) for student %s", coll, n, describe_student(self.student_identity))
                self._count("manifest_adopted")
            elif exists:
                raise ManifestError(
                    f"collection {coll!r} ({where}, {n} documents) has no manifest {self.manifest.path}: nothing records which student built it "
                    f"(made before manifests, or the file was deleted). If {describe_student(self.student_identity)} built it, adopt it with "
                    f"`antigravity adopt --data-dir {self.settings.data_dir}` (API: adopt=True); otherwise rebuild with {self._recovery()}"
                )
            elif versions or active["version"]:
                raise ManifestError(
                    f"adapter checkpoints {versions} exist in {view.dir} but there is no collection {coll!r} ({where}) and no manifest: "
                    f"the store was deleted or replaced. Restore the store folder from a backup, or rebuild with {self._recovery()}"
                )
        else:
            diffs = identity_differences(manifest["student"], self.student_identity)
            if diffs:
                stored, running = manifest["student"], self.student_identity
                dims = f"holds {stored.get('dim')}-d vectors; the student makes {running.get('dim')}-d: it " if "dim" in diffs else ""
                raise ManifestError(
                    f"collection {coll!r} {dims}was built by student {describe_student(stored)} ({self.manifest.path}); the running student is "
                    f"{describe_student(running)} (differs in {', '.join(diffs)}). Use the same student, or re-index deliberately with {self._recovery()}"
                )
            if not exists and (manifest["documents"] > 0 or versions):
                files = f"the store's {self.store.meta_file} or {self.store.collection_dir}" if self.store.meta_file else "the collection"
                raise ManifestError(
                    f"{self.manifest.path} records {manifest['documents']} documents in collection {coll!r} but the store has no such collection: "
                    f"{files} was deleted or replaced. Restore it from a backup, or rebuild with {self._recovery()}"
                )
            if exists and n < manifest["documents"]:
                raise ManifestError(
                    f"{where} holds {n} documents but {self.manifest.path} records at least {manifest['documents']}: the storage file was "
                    f"truncated, replaced or partly deleted. Restore it from a backup, or rebuild with {self._recovery()}"
                )
        if exists and n == 0 and versions:
            raise ManifestError(
                f"{where} holds no documents but adapter checkpoints {versions} exist in {view.dir}: the storage was emptied or replaced. "
                f"Restore it from a backup, or rebuild with {self._recovery()}"
            )
        if ckpt is not None:
            self._serve_restored(active, ckpt)

    def _load_active(self, active: dict[str, Any]):
        """Load (and check against the running student) the checkpoint ``active.json`` names."""
        assert self.adapters is not None
        self._version_counter = self.adapters.max_version()
        self._history = [int(v) for v in active["history"]] or [0]
        version = active["version"]
        if version == 0:
            return None
        if version not in self.adapters.versions():
            raise CheckpointError(
                f"{self.adapters.active_path} names adapter version {version}, but {self.adapters.meta_path(version).name} is missing from "
                f"{self.adapters.dir} (on disk: {self.adapters.versions()}); restore it from a backup, or delete active.json to serve the frozen student"
            )
        return self.adapters.load(version, student=self.encoder.name, dim=self.encoder.dim)

    def _serve_restored(self, active: dict[str, Any], ckpt: Any) -> None:
        """Serve the version ``active.json`` names (its checkpoint already loaded and checked)."""
        assert self.adapters is not None
        version = active["version"]
        slot = active["slot"] if ckpt.doc_adapter is not None else RAW
        if ckpt.doc_adapter is not None and slot not in SLOTS:
            raise CheckpointError(f"{self.adapters.active_path}: slot {slot!r} is not one of {SLOTS}")
        state = ServedVersion(version, slot, ckpt.doc_adapter, ckpt.query_adapter, ckpt.meta)
        if ckpt.doc_adapter is not None:
            self._slot_content[slot] = state
            self._verify_slot(state)
        self._served = state
        self._versions[version] = state
        logger.info("restored adapter version %d (%s) from %s", version, slot, self.adapters.dir)

    def _verify_slot(self, state: ServedVersion, sample: int = 256) -> None:
        """Check the first ``sample`` stored documents of ``state.slot`` against
        ``doc_adapter(raw)``; re-materialise the slot if they differ (e.g. a store restored
        from an older backup). Nothing is done for an empty store."""
        batch = next(iter(self.store.iter_vectors((RAW, state.slot), batch_size=sample)), None)
        if batch is None:
            return
        _, mats = batch
        expected = state.doc_adapter.transform(mats[RAW])
        if np.abs(expected - mats[state.slot]).max() > 1e-4:
            logger.warning("slot %s does not hold adapter version %d; re-materialising it", state.slot, state.version)
            ids, raw = self.raw_matrix()
            served = state.doc_adapter.transform(raw)
            for i in range(0, len(ids), 4096):
                self.store.set_served(ids[i : i + 4096], state.slot, served[i : i + 4096])
            self._count("slots_rematerialised")

    # -- context manager / lifecycle --------------------------------------------------
    def __enter__(self) -> "AntigravityEngine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the store client and release the models. Idempotent."""
        if not self._closed:
            self._closed = True
            with self._readers_cv:  # a promotion waiting for searches gives up (AdaptationError)
                self._readers_cv.notify_all()
            self.store.close()
            self.encoder.release()
            if self._teacher_helper is not None:
                self._teacher_helper.release()

    # -- ingest -----------------------------------------------------------------------
    def ingest(self, documents: Iterable[Any], *, batch_size: int | None = None, show_progress: bool = False) -> int:
        """Embed and store documents; returns how many were written.

        Args:
            documents: iterable of BEIR dicts ``{"_id", "title"?, "text", ...extra payload}``
                or ``(id, text)`` / ``(id, text, payload)`` tuples; the accepted ids, texts
                and payload values are documented once in :mod:`antigravity.core.documents`.
                Text longer than the student's ``max_seq_length`` tokens is truncated by the
                model (the full text is still stored in the payload). Empty documents (blank
                title and text) are stored and counted but never returned by a search.
            batch_size: documents per upsert batch (default ``store.upsert_batch_size``).

        One call is all or nothing for everything the engine can check: every document is
        validated and embedded before the first is written, so a malformed document, a
        duplicate id within the call or a non-finite student vector anywhere stores nothing
        of the call (memory: the call's texts and ``(n, d) float32`` vectors; pass a very
        large corpus in several calls). An id already stored is replaced (upsert: never
        duplicated). A store failure or a crash mid-write leaves the batches already
        acknowledged by Qdrant stored; re-running the call is safe (upserts).

        Raises:
            DocumentError: malformed document (names it, and the key). EmptyCorpusError:
                nothing given. ManifestError: the collection was built by another student,
                or its manifest vanished. StoreError: the store refused the write.
        """
        bs = self.settings.store.upsert_batch_size if batch_size is None else batch_size
        if isinstance(bs, bool) or not isinstance(bs, int) or bs < 1:
            raise DocumentError(f"batch_size must be >= 1, got {bs}")
        items: list[tuple[str, str, dict[str, Any], bool]] = []
        seen: set[str] = set()
        for i, doc in enumerate(documents):
            item = validate_document(doc, index=i)
            if item[0] in seen:
                raise DocumentError(f"duplicate document id {item[0]!r} in one ingest call")
            seen.add(item[0])
            items.append(item)
        if not items:
            raise EmptyCorpusError("ingest was given no documents")
        return self._ingest_validated(items, bs, show_progress)

    def _ingest_validated(self, items: list[tuple[str, str, dict[str, Any], bool]], bs: int, show_progress: bool = False) -> int:
        """Embed all of ``items`` (validated ``(id, text, payload, is_empty)``), then write
        them in batches of ``bs``. Used by :meth:`ingest` and ``antigravity index``."""
        self._check_manifest_for_write()
        ids = [it[0] for it in items]
        progress = None
        if show_progress:
            from rich.progress import Progress

            progress = Progress()
            progress.start()
            task = progress.add_task("embed + write", total=2 * len(items))
        try:
            parts = []
            for i in range(0, len(items), max(bs, 512)):
                parts.append(np.asarray(self.encoder.encode([it[1] for it in items[i : i + max(bs, 512)]]), dtype=np.float32))
                if progress:
                    progress.update(task, advance=len(parts[-1]))
            raw = np.concatenate(parts)
            if raw.shape != (len(items), self.encoder.dim):
                raise DocumentError(f"the student returned shape {raw.shape} for {len(items)} documents")
            if not np.isfinite(raw).all():
                bad = [ids[i] for i in np.where(~np.isfinite(raw).all(axis=1))[0]]
                raise DocumentError(f"the student produced non-finite vectors for documents {bad[:5]}; nothing of this call was written")
            written = 0
            n_empty = sum(1 for it in items if it[3])
            for start in range(0, len(items), bs):
                written += self._write_batch(items[start : start + bs], raw[start : start + bs])
                if progress:
                    progress.update(task, advance=min(bs, len(items) - start))
        finally:
            if progress:
                progress.stop()
            self._after_write(recount_empty=True)
        if n_empty:
            self._count("empty_documents_ingested", n_empty)
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
        diffs = identity_differences(m["student"], self.student_identity)
        if diffs:
            raise ManifestError(
                f"collection {self.store.collection!r} was built by student {describe_student(m['student'])}; this engine's student is "
                f"{describe_student(self.student_identity)} (differs in {', '.join(diffs)}); nothing was written"
            )

    def _after_write(self, recount_empty: bool = False) -> None:
        """After an ingest call: raise the manifest's document lower bound; recount empties."""
        if self.store.dim is None:
            return
        try:
            if recount_empty:
                self.store.n_empty = self.store.count_empty()
            if self.manifest is not None:
                m = self.manifest.read()
                n = self.store.count()
                if m is not None and n > m["documents"]:
                    m["documents"] = n
                    self.manifest.write(m)
        except Exception as exc:  # noqa: BLE001 - the documents are stored; the bound only lags
            logger.warning("could not update the collection manifest after ingest: %s", exc)

    def _write_batch(self, batch: list[tuple[str, str, dict[str, Any], bool]], raw: np.ndarray) -> int:
        ids = [b[0] for b in batch]
        keep_text = self.settings.store.store_text
        payloads = [b[2] if keep_text else {k: v for k, v in b[2].items() if k not in ("title", "text")} for b in batch]
        with self._write_lock:
            if self.store.dim is None and self.manifest is not None and not self.manifest.exists():
                # the manifest is written before the collection: a crash between the two
                # leaves a manifest with 0 documents and no collection, which opens fine
                self.manifest.create(self.store.collection, self._store_where(), self.student_identity, 0)
            self.store.ensure_collection(self.encoder.dim)
            # write every slot (an upsert replaces the whole point): a search still running on
            # the previously served slot must find these documents under *its* version
            served = {}
            for slot in SLOTS:
                content = self._slot_content.get(slot)
                served[slot] = content.doc_adapter.transform(raw) if content is not None and content.doc_adapter is not None else raw
            self.store.n_empty += sum(1 for b in batch if b[3])  # over-fetch until recounted
            self.store.upsert(ids, raw, payloads, served)
            self._raw_cache = None
            self._payload_cache = None
            for d in ids:
                self._teacher_doc_vectors.pop(d, None)
            self._count("documents_ingested", len(ids))
        return len(ids)

    def count(self) -> int:
        """Number of stored documents (empty documents included)."""
        return self.store.count()

    def get(self, doc_id: Any) -> dict[str, Any] | None:
        """The stored payload (``title``, ``text``, extra keys) of ``doc_id``, or ``None``.

        Raises:
            DocumentError: ``doc_id`` is not a valid id (see :mod:`antigravity.core.documents`).
        """
        from antigravity.core.documents import validate_id

        sid = validate_id(doc_id)
        payload = self.store.retrieve([sid]).get(sid)
        if payload is None:
            return None
        return {k: v for k, v in payload.items() if not k.startswith(RESERVED_PREFIX)}

    # -- search -----------------------------------------------------------------------
    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Raw student vectors of ``queries``: ``(m, d) float32`` (not cached: traffic is unbounded)."""
        for i, q in enumerate(queries):
            validate_query_text(q, index=i)
        return self.encoder.encode_uncached(list(queries)) if queries else np.zeros((0, self.encoder.dim), np.float32)

    def search(self, query: str, k: int = 10, *, record: bool = True) -> list[SearchHit]:
        """Top-``k`` documents for ``query``.

        Args:
            query: non-empty text. k: number of hits, ``>= 1``.
            record: keep the query for label-free adaptation signals (bounded buffer).

        Raises:
            QueryError: empty/non-string query, text that is not valid Unicode, or ``k <= 0``.
        """
        return self.search_batch([query], k=k, record=record)[0]

    def search_batch(self, queries: Sequence[str], k: int = 10, *, record: bool = True) -> list[list[SearchHit]]:
        """:meth:`search` for several queries in one encoder pass; one hit list per query."""
        if isinstance(queries, str):
            raise QueryError("search_batch takes a list of queries, got a single string")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise QueryError(f"k must be an integer >= 1, got {k!r}")
        raw = self.encode_queries(list(queries))
        return self.search_vectors(raw, k=k, record=record, texts=list(queries))

    def search_vectors(self, raw: np.ndarray, k: int = 10, *, record: bool = True, texts: Sequence[str] | None = None) -> list[list[SearchHit]]:
        """Search with precomputed raw student query vectors ``(m, d) float32``; ``texts``
        (optional, same order) are kept with the traffic record for teacher guidance."""
        raw = np.asarray(raw, dtype=np.float32)
        if raw.ndim != 2 or (self.store.dim is not None and raw.shape[1] != self.store.dim):
            raise QueryError(f"query vectors must have shape (m, {self.store.dim}), got {raw.shape}")
        if not np.isfinite(raw).all():
            raise QueryError("query vectors contain NaN or inf")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise QueryError(f"k must be an integer >= 1, got {k!r}")
        fusion = self.settings.teacher.fusion_weight if texts is not None else 0.0
        limit = max(k, self.settings.teacher.fusion_candidates) if fusion > 0 else k
        state = self._acquire()
        try:
            q = state.query_adapter.transform(raw) if state.query_adapter is not None else raw
            results = self.store.search(q, using=state.slot, k=limit)
        finally:
            self._release(state.slot)
        if fusion > 0:
            results = self._fuse_teacher_scores(list(texts), results, k, fusion)
        self._count("queries_served", len(raw))
        if record:
            top = self.settings.adaptation.signal_top_k
            for i, (vec, hits) in enumerate(zip(raw, results)):
                text = texts[i] if texts is not None else None
                self._traffic.append(TrafficRecord(vec.copy(), [h[0] for h in hits[:top]], np.array([h[1] for h in hits[:top]], np.float32), text))
            self._count("signals_recorded", len(raw))
            self._maybe_auto_cycle()
        return [[SearchHit(d, s, p) for d, s, p in hits] for hits in results]

    def _fuse_teacher_scores(self, texts: list[str], results: list, k: int, weight: float) -> list:
        """Serving-time fusion (opt-in, ``teacher.fusion_weight``): re-score each query's
        student candidates with ``(1 − λ)·student_cos + λ·teacher_cos`` and keep the top ``k``.
        Teacher document vectors are computed once per document and kept in memory; the
        query is encoded by the teacher on every search. Any teacher failure returns the
        student's ranking (counted in ``stats()["teacher_failures"]``), never an error."""
        from antigravity.core.errors import TeacherError

        try:
            with self._fusion_lock:
                helper = self.teacher_helper
                tq = helper.get_teacher_embeddings(texts, cache=False)
                missing = list(dict.fromkeys(d for hits in results for d, _, _ in hits if d not in self._teacher_doc_vectors))
                if missing:
                    vecs = helper.get_teacher_embeddings([doc_text({"title": h.get("title", ""), "text": h.get("text", "")}) for h in self._payloads_of(results, missing)])
                    self._teacher_doc_vectors.update(zip(missing, vecs))
            fused = []
            for qv, hits in zip(tq, results):
                if not hits:
                    fused.append(hits)
                    continue
                tv = np.stack([self._teacher_doc_vectors[d] for d, _, _ in hits]) @ qv
                scores = [(1.0 - weight) * s + weight * float(t) for (_, s, _), t in zip(hits, tv)]
                order = np.argsort(-np.asarray(scores), kind="stable")[:k]
                fused.append([(hits[i][0], scores[i], hits[i][2]) for i in order])
            self._count("fused_searches", len(texts))
            return fused
        except Exception as exc:  # noqa: BLE001 - fusion must never make search fail
            from antigravity.core.errors import failure_kind

            err = exc if isinstance(exc, TeacherError) else TeacherError(f"serving fusion failed: {exc}")
            self.record_teacher_failure("fusion_" + failure_kind(err), err)
            return [hits[:k] for hits in results]

    def _payloads_of(self, results: list, doc_ids: list[str]) -> list[dict]:
        if not self.settings.store.store_text:
            raise DocumentError("serving fusion needs document text in the payload (store.store_text = true)")
        found = {d: p for hits in results for d, _, p in hits}
        return [found[d] for d in doc_ids]

    #: seconds between "still waiting" warnings while a promotion waits for searches on a slot
    _slot_wait_warn_s: float = 60.0

    def _wait_for_readers(self, slot: str, version: int) -> None:
        """Block until no search reads ``slot`` (no timeout: a slot is never rewritten under
        a search, however slow); log a warning every ``_slot_wait_warn_s`` seconds meanwhile.
        Cannot deadlock: a search holds no engine lock while it counts as a reader.

        Raises:
            AdaptationError: :meth:`close` was called while waiting (nothing was changed).
        """
        from antigravity.core.errors import AdaptationError

        with self._readers_cv:
            while not self._readers_cv.wait_for(lambda: self._closed or self._readers[slot] == 0, timeout=self._slot_wait_warn_s):
                logger.warning("promotion to version %d waits for %d search(es) still reading slot %s", version, self._readers[slot], slot)
            if self._closed:
                raise AdaptationError(f"engine closed while version {version} waited for searches on slot {slot}; version {self._served.version} is still the served one")

    def _acquire(self) -> ServedVersion:
        with self._readers_cv:
            state = self._served
            self._readers[state.slot] += 1
            return state

    def _release(self, slot: str) -> None:
        with self._readers_cv:
            self._readers[slot] -= 1
            self._readers_cv.notify_all()

    # -- served versions --------------------------------------------------------------
    @property
    def served_version(self) -> ServedVersion:
        """The adapter version answering searches now."""
        return self._served

    def raw_matrix(self) -> tuple[list[str], np.ndarray]:
        """All stored raw document vectors: ``(ids, (n, d) float32)`` (cached until the next ingest)."""
        cached = self._raw_cache
        if cached is not None:
            return cached
        ids: list[str] = []
        mats: list[np.ndarray] = []
        for b_ids, b in self.store.iter_vectors((RAW,)):
            ids.extend(b_ids)
            mats.append(b[RAW])
        dim = self.store.dim or self.encoder.dim
        result = (ids, np.concatenate(mats) if mats else np.zeros((0, dim), np.float32))
        self._raw_cache = result
        return result

    def document_fields(self, doc_id: str) -> dict[str, str]:
        """``{"title", "text"}`` of a stored document (from the payload)."""
        if self._payload_cache is None:
            self._payload_cache = {d: {"title": str(p.get("title", "")), "text": str(p.get("text", ""))} for d, p in self.store.iter_payloads()}
        try:
            return self._payload_cache[doc_id]
        except KeyError:
            raise DocumentError(f"unknown document id {doc_id!r}") from None

    def document_texts(self, doc_ids: Sequence[str]) -> list[str]:
        """Embedded text (``title + " " + text``) of stored documents.

        Raises:
            DocumentError: the store keeps no text (``store.store_text = false``).
        """
        if not self.settings.store.store_text:
            raise DocumentError("documents were stored without text (store.store_text = false); the teacher cannot read them")
        return [doc_text(self.document_fields(d)) for d in doc_ids]

    def traffic_texts(self) -> list[str]:
        """Texts of the buffered traffic queries that have one."""
        return [r.text for r in list(self._traffic) if r.text]

    def activate(
        self,
        doc_adapter: ResidualAdapter | None,
        query_adapter: ResidualAdapter | None,
        *,
        version: int,
        meta: dict[str, Any] | None = None,
        raw: tuple[list[str], np.ndarray] | None = None,
    ) -> ServedVersion:
        """Materialise ``doc_adapter(raw)`` for every document into the idle slot and switch
        searches to it in one step. ``None`` adapters mean identity; with no doc adapter the
        raw vectors are served directly. Ingest waits while this runs; searches do not.

        Searches still reading the idle slot (started two versions ago) are waited for
        without a timeout before the slot is rewritten, so a search, however slow, only ever
        sees one version; a warning is logged every minute meanwhile.

        With persistence on (``adaptation.persist``, a store on disk or a server), a version
        not yet on disk is first saved as a checkpoint (:mod:`antigravity.serving.checkpoints`), and
        ``active.json`` is updated after the slot is fully written and before searches
        switch, so a crash at any point leaves a consistent served version to restore.

        Raises:
            AdaptationError: :meth:`close` was called while waiting for those searches; the
                slot was not touched, ``active.json`` not updated, and the current version keeps
                serving (a checkpoint saved just before stays on disk, unserved).
        """
        with self._write_lock:
            meta = dict(meta or {})
            if self.adapters is not None and version != 0 and not self.adapters.meta_path(version).exists():
                meta = self.adapters.save(version, doc_adapter, query_adapter, self._checkpoint_meta(meta))
            if doc_adapter is None:
                new = ServedVersion(version, RAW, None, query_adapter, meta)
            elif doc_adapter is self._served.doc_adapter:  # documents unchanged: reuse the served slot
                new = ServedVersion(version, self._served.slot, doc_adapter, query_adapter, meta)
            else:
                current = self._served.slot
                target = SLOTS[1] if current == SLOTS[0] else SLOTS[0]
                self._wait_for_readers(target, version)
                self._slot_content.pop(target, None)  # half-written until the loop ends
                ids, mat = raw if raw is not None else self.raw_matrix()
                served = doc_adapter.transform(mat)
                for i in range(0, len(ids), 4096):
                    self.store.set_served(ids[i : i + 4096], target, served[i : i + 4096])
                new = ServedVersion(version, target, doc_adapter, query_adapter, meta)
                self._slot_content[target] = new
            history = [v for v in self._history if v != version] + [version]
            if self.adapters is not None:
                self.adapters.set_active(version, new.slot, history)
            with self._readers_cv:
                self._served = new
                self._versions[version] = new
                self._history = history
            logger.info("serving adapter version %d from %s", version, new.slot)
            return new

    def _checkpoint_meta(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Metadata saved with a new checkpoint (see :meth:`AdapterRegistry.save`)."""
        teacher = None
        helper = self._teacher_helper
        fallback = None
        status = self._guidance_status
        if status and status.startswith("failed:") and not metrics.get("teacher"):
            fallback = status.split(":", 1)[1]  # this hybrid cycle fell back to baseline targets
        elif metrics.get("teacher") or (self.settings.mode == "hybrid" and helper is not None and helper.loaded):
            src = helper._teacher if helper is not None else None  # never resolve or probe a teacher here
            dim = metrics.get("teacher_dim")
            if not dim and src is not None:
                dim = getattr(src, "known_dim", None)  # metadata never asks a (possibly dead) endpoint
            teacher = {"name": metrics.get("teacher") or (getattr(src, "name", None) if src is not None else None), "dim": int(dim) if dim else None}
        out = {
            "parent": self._served.version,
            "mode": self.settings.mode,
            "source": metrics.get("source", "sedimentation"),
            "student": {"name": self.encoder.name, "dim": int(self.encoder.dim)},
            "teacher": teacher,
            "settings_hash": settings_hash(self.settings),
            "metrics": metrics,
        }
        if fallback is not None:
            out["teacher_fallback"] = fallback
        return out

    # -- adaptation -------------------------------------------------------------------
    def set_validation(self, query_ids: Sequence[str], query_vectors: np.ndarray | None, qrels: dict[str, dict[str, int]], *, queries: Sequence[str] | None = None) -> None:
        """Give the quality gate a labelled dev split: ``query_ids`` with their raw vectors
        ``(m, d) float32`` (or their texts via ``queries=``) and ``qrels``. Never pass
        evaluation (test) queries here. Without a dev split the label-free proxy gate is used.
        Texts given via ``queries=`` are also used, without their labels, by the refit step of
        offline distillation (``DistillationConfig.refit``).
        """
        from antigravity.adaptation.sedimentation import DevSetGate

        if query_vectors is None:
            if queries is None:
                raise QueryError("set_validation needs query_vectors or queries")
            query_vectors = self.encode_queries(list(queries))
        if len(query_ids) != len(query_vectors):
            raise QueryError(f"{len(query_ids)} query ids but {len(query_vectors)} vectors")
        missing = [q for q in query_ids if q not in qrels]
        if missing:
            raise QueryError(f"validation queries without qrels: {missing[:5]}")
        self._validation = DevSetGate(list(query_ids), query_vectors, qrels)
        self._validation_texts = list(queries) if queries is not None else None

    def run_sedimentation_cycle(self):
        """Train a new adapter version on the buffered traffic signals, gate it, and switch
        to it atomically if it passes. Returns a :class:`~antigravity.adaptation.sedimentation.CycleReport`
        (``promoted``, ``reason``, ``n_signals``, ``n_targets``, losses, ``drift``, times).
        A cycle with no signals is a no-op with a clear ``reason``; a failing cycle keeps
        the current version. Only one cycle runs at a time.
        """
        from antigravity.adaptation.sedimentation import run_cycle

        with self._cycle_lock:
            self._signals_at_last_cycle = self._stats.get("signals_recorded", 0)
            self._guidance_status = None
            try:
                return run_cycle(self, teacher_guidance=self._teacher_guidance())
            finally:
                self._guidance_status = None

    def _teacher_guidance(self):
        """Hybrid mode: a callable blending teacher rankings into a cycle's targets, or None.
        Whatever goes wrong in it (teacher or not) leaves the homeostatic targets, is counted
        in ``stats()["teacher_failures"]`` and never fails the cycle."""
        w = self.settings.teacher.weight
        if self.settings.mode != "hybrid" or w == 0.0:
            return None
        from antigravity.adaptation.distillation import hybrid_guidance
        from antigravity.core.errors import failure_kind
        from antigravity.core.errors import TeacherError

        def guide(traffic, targets):
            try:
                out = hybrid_guidance(self, traffic, targets, w)
            except Exception as exc:  # noqa: BLE001 - the fallback chain: hybrid -> baseline
                err = exc if isinstance(exc, TeacherError) else TeacherError(f"hybrid guidance failed: {type(exc).__name__}: {exc}", kind=f"guidance_{type(exc).__name__}")
                self.record_teacher_failure(failure_kind(err), err)
                self._guidance_status = f"failed:{failure_kind(err)}"
                return targets
            return out

        return guide

    @property
    def teacher_helper(self):
        """The engine's lazy :class:`~antigravity.adaptation.distillation.TeacherDistillationHelper`
        (nothing is loaded until a hybrid cycle or offline distillation needs the teacher)."""
        if self._teacher_helper is None:
            from antigravity.adaptation.distillation import TeacherDistillationHelper

            if self._teacher_source is None and not (self.settings.teacher.name or self.settings.teacher.base_url):
                from antigravity.core.errors import ConfigurationError

                raise ConfigurationError("no teacher configured: set teacher.name or teacher.base_url")

            self._teacher_helper = TeacherDistillationHelper(
                self._teacher_source, student_dim=self.encoder.dim, cache_dir=self.settings.resolved_cache_dir, settings=self.settings.teacher
            )
        return self._teacher_helper

    def record_teacher_failure(self, kind: str, exc: BaseException) -> None:
        """Count a teacher failure by ``kind`` (``stats()["teacher_failures"]``, and the
        total in ``stats()["teacher_failures_total"]``); log each kind once (URL credentials
        masked). Thread-safe: serving fusion and background cycles report here too."""
        with self._stats_lock:
            failures = self._stats.setdefault("teacher_failures", {})
            first = kind not in failures
            failures[kind] = failures.get(kind, 0) + 1
            self._stats["teacher_failures_total"] += 1
        if first:
            logger.warning("teacher failure (%s): %s — falling back (hybrid/offline -> baseline, fusion -> student ranking)", kind, mask_url(str(exc)))

    # settings that shape the encoder or the store: changing them needs a new engine
    _RESTART_KEYS = ("data_dir", "cache_dir", "student", "store")

    def set_mode(self, mode: str, *, teacher_weight: float | None = None) -> None:
        """Switch ``mode`` (``baseline`` | ``offline`` | ``hybrid``) on a running engine.
        Searches in flight are not interrupted and no stored data changes. The teacher is
        loaded lazily where it is used — each hybrid cycle, or a
        :meth:`run_offline_distillation` run (which releases it when done) — and a switch to
        ``baseline`` or ``offline`` releases the one kept for hybrid cycles. Logged; counted
        in ``stats()`` (``mode_switches``).

        Raises:
            ConfigurationError: unknown mode, weight outside [0, 1], or a teacher mode with no
                teacher configured (nothing changed).
        """
        new = _settings_dict(self.settings)
        new["mode"] = mode
        if teacher_weight is not None:
            new["teacher"]["weight"] = teacher_weight
        self._apply_settings(self._validated(new))

    def reload_settings(self, config_file: str | None = None, **overrides: Any) -> dict[str, tuple[Any, Any]]:
        """Re-read settings (arguments > environment > config file > defaults) on a running
        engine and apply them: ``mode``, ``teacher.*``, ``adaptation.*``, ``gate.*`` and
        ``benchmark.*`` take effect at once (as :meth:`set_mode`). The file is
        ``config_file``, or the one the engine's settings were loaded from; keyword
        arguments given when the engine was built are re-applied, then ``overrides``.

        Returns:
            ``{dotted key: (old, new)}`` of what changed.

        Raises:
            ConfigurationError: invalid file/value, or a change to ``student``, ``store``,
                ``data_dir`` or ``cache_dir`` (they need a new engine) — nothing changed.
        """
        path = config_file or self.settings._config_file
        new = Settings.load(path, **{**self.settings._overrides, **overrides})
        return self._apply_settings(new)

    def _validated(self, data: dict[str, Any]) -> Settings:
        from antigravity.core.errors import ConfigurationError
        from antigravity.settings import format_validation_error

        try:
            validated = Settings(**data)
        except Exception as exc:  # pydantic ValidationError
            raise ConfigurationError(format_validation_error(exc) if hasattr(exc, "errors") else str(exc)) from None
        validated._config_file = self.settings._config_file
        validated._overrides = self.settings._overrides
        return validated

    def _apply_settings(self, new: Settings) -> dict[str, tuple[Any, Any]]:
        from antigravity.core.errors import ConfigurationError

        old_d, new_d = _flatten(_settings_dict(self.settings)), _flatten(_settings_dict(new))
        changed = {k: (old_d.get(k), new_d.get(k)) for k in sorted(set(old_d) | set(new_d)) if old_d.get(k) != new_d.get(k)}
        frozen = [k for k in changed if k.split(".")[0] in self._RESTART_KEYS]
        if frozen:
            raise ConfigurationError(
                f"cannot change {', '.join(frozen)} on a running engine (they shape the stored vectors); "
                "build a new engine for them. Nothing was changed."
            )
        with self._cycle_lock:  # not during a cycle or a distillation run
            old_mode = self.settings.mode
            teacher_changed = any(k in changed for k in ("teacher.name", "teacher.base_url", "teacher.api_key_env", "teacher.bf16", "teacher.batch_size", "teacher.timeout_s", "teacher.max_retries"))
            self.settings = new
            if self._teacher_helper is not None and (new.mode != "hybrid" or teacher_changed):
                self._teacher_helper.release()
                if teacher_changed:
                    self._teacher_helper = None  # the next use resolves the new teacher
            if teacher_changed:
                self._teacher_doc_vectors = {}
            if "adaptation.max_signals" in changed:
                self._traffic = collections.deque(self._traffic, maxlen=new.adaptation.max_signals)
            if old_mode != new.mode:
                self._count("mode_switches")
            self._count("settings_applied")
        if changed:
            logger.info("settings applied: %s", ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items() if "api_key" not in k))
        if old_mode != new.mode:
            logger.info("mode switched: %s -> %s (teacher weight %s)", old_mode, new.mode, new.teacher.weight)
        return changed

    def run_offline_distillation(self, queries: Sequence[str] = (), **kwargs: Any):
        """Pre-train the adapter on the teacher's rankings (offline mode); see
        :func:`antigravity.adaptation.distillation.run_offline_distillation`. A teacher failure returns
        an unpromoted report (counted in ``stats()["teacher_failures"]``) instead of raising."""
        from antigravity.adaptation.distillation import DistillationReport, run_offline_distillation
        from antigravity.core.errors import failure_kind
        from antigravity.core.errors import TeacherError

        with self._cycle_lock:
            try:
                return run_offline_distillation(self, queries, **kwargs)
            except TeacherError as exc:  # fallback chain: offline -> baseline, never a crash
                self.record_teacher_failure(failure_kind(exc), exc)
                return DistillationReport(None, False, f"teacher failed ({exc}); kept the current version (baseline)")

    def _maybe_auto_cycle(self) -> None:
        s = self.settings.adaptation
        if not s.auto_cycle or self._stats.get("signals_recorded", 0) - self._signals_at_last_cycle < s.min_signals:
            return
        if self._cycle_lock.locked() or (self._auto_thread is not None and self._auto_thread.is_alive()):
            return
        self._signals_at_last_cycle = self._stats.get("signals_recorded", 0)
        self._auto_thread = threading.Thread(target=self._auto_cycle_worker, name="antigravity-sedimentation", daemon=True)
        self._auto_thread.start()

    def _auto_cycle_worker(self) -> None:
        """Background cycle (``adaptation.auto_cycle``): never lets an exception kill the
        thread silently — it is logged and counted in ``stats()["auto_cycle_errors"]``; the
        served version stays."""
        try:
            self.run_sedimentation_cycle()
            self._count("auto_cycles_run")
        except Exception as exc:  # noqa: BLE001 - a background thread has no caller to raise to
            self._count("auto_cycle_errors")
            logger.error("automatic sedimentation cycle failed (%s: %s); still serving version %d", type(exc).__name__, mask_url(str(exc)), self._served.version)

    def wait_for_auto_cycle(self, timeout: float | None = None) -> bool:
        """Wait for a running automatic cycle; True if none is running afterwards."""
        t = self._auto_thread
        if t is not None:
            t.join(timeout)
            return not t.is_alive()
        return True

    def _next_version(self) -> int:
        self._version_counter = max(self._version_counter, max(self._versions)) + 1
        return self._version_counter

    def _record_cycle(self, report: Any) -> None:
        self._cycles.append(report)
        self._count("cycles_run")
        self._count("cycles_promoted" if report.promoted else "cycles_rejected")

    @property
    def cycle_reports(self) -> list[Any]:
        """Reports of every cycle run by this engine, oldest first."""
        return list(self._cycles)

    def rollback(self, version: int | None = None) -> ServedVersion:
        """Serve an earlier adapter version again: ``version``, or the one promoted before
        the current one (version 0 = the frozen student). Versions saved by an earlier run
        of the engine are loaded from their checkpoints.

        Raises:
            AdaptationError: unknown version, or nothing to roll back to.
            CheckpointError: the version's checkpoint is corrupt or made for another student.
        """
        from antigravity.core.errors import AdaptationError

        with self._cycle_lock:
            if version is None:
                if len(self._history) < 2:
                    raise AdaptationError("nothing to roll back to: only the frozen student has been served")
                version = self._history[-2]
                self._history = self._history[:-1]  # activate() appends `version` back
            if isinstance(version, bool) or not isinstance(version, int):
                raise AdaptationError(f"adapter version must be an int, got {version!r}")
            old = self._versions.get(version)
            if old is None and self.adapters is not None and version in self.adapters.versions():
                ckpt = self.adapters.load(version, student=self.encoder.name, dim=self.encoder.dim)
                old = ServedVersion(version, RAW, ckpt.doc_adapter, ckpt.query_adapter, ckpt.meta)
            if old is None:
                raise AdaptationError(f"unknown adapter version {version}; known: {self.adapter_versions()}")
            return self.activate(old.doc_adapter, old.query_adapter, version=version, meta=old.meta)

    def adapter_versions(self) -> list[int]:
        """Versions this engine can serve: in memory or saved on disk (0 = frozen student)."""
        on_disk = set(self.adapters.versions()) if self.adapters is not None else set()
        return sorted(set(self._versions) | on_disk)

    def _count(self, key: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``key`` atomically (``+=`` on a dict is a read then a
        write: two search threads could both read the old value and lose a count)."""
        with self._stats_lock:
            self._stats[key] += n

    def stats(self) -> dict[str, Any]:
        """Counters and the served state: documents, queries, version, mode, traffic size."""
        with self._stats_lock:
            counters = {k: dict(v) if isinstance(v, dict) else v for k, v in self._stats.items()}
        return {
            **counters,
            "mode": self.settings.mode,
            "documents": self.count(),
            "adapter_version": self._served.version,
            "served_slot": self._served.slot,
            "traffic_buffered": len(self._traffic),
            "adapter_versions": self.adapter_versions(),
            "adapters_dir": str(self.adapters.dir) if self.adapters is not None else None,
            "student": self.encoder.name,
            "teacher_loaded": bool(self._teacher_helper is not None and self._teacher_helper.loaded),
            "empty_documents": self.store.n_empty,
            "permission_warnings": len(self.permission_warnings),
        }
