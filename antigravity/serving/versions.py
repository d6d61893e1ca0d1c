"""Served adapter versions: the two served slots, readers, activation and rollback.

The :class:`VersionManager` is the only code that numbers, checkpoints and activates
versions. Documents live in the store under the named vector ``raw`` (the frozen student)
and two served slots; a promotion writes ``doc_adapter(raw)`` into the idle slot and then
switches searches to it in one reference swap, so a search sees exactly one version.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from antigravity.adaptation.adapter import ResidualAdapter
from antigravity.core.errors import AdaptationError, CheckpointError, StoreError
from antigravity.serving.checkpoints import AdapterRegistry
from antigravity.serving.counters import Counters
from antigravity.stores.qdrant import RAW, SLOTS

logger = logging.getLogger("antigravity.engine")


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


class VersionManager:
    """Numbers, checkpoints, activates and rolls back adapter versions.

    Args:
        store: the :class:`~antigravity.stores.qdrant.QdrantStore` (writes served slots).
        adapters: the checkpoint registry, or ``None`` when versions are not persisted.
        checkpoint_meta: ``metrics -> CheckpointMeta`` for a new checkpoint.
        counters: where re-materialisations are counted.
        write_lock: the lock ingest holds while writing (a promotion excludes ingest).
        on_slot_rewritten: called after a promotion rewrote a slot (the index policy).
    """

    #: seconds between "still waiting" warnings while a promotion waits for searches on a slot
    slot_wait_warn_s: float = 60.0

    def __init__(self, store: Any, adapters: AdapterRegistry | None,
                 checkpoint_meta: Callable[[dict[str, Any]], Any], counters: Counters, write_lock: threading.RLock,
                 on_slot_rewritten: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.adapters = adapters
        self._checkpoint_meta = checkpoint_meta
        self._on_slot_rewritten = on_slot_rewritten
        self._counters = counters
        self.write_lock = write_lock
        self._served = ServedVersion()
        self._readers_cv = threading.Condition()
        self._readers: collections.Counter[str] = collections.Counter()
        self._slot_content: dict[str, ServedVersion] = {}  # which version each served slot holds
        self._versions: dict[int, ServedVersion] = {0: self._served}
        self._counter = 0
        self._history: list[int] = [0]  # promoted versions, oldest first
        self._closed = False

    # -- readers ------------------------------------------------------------------------
    @property
    def served(self) -> ServedVersion:
        """The version answering searches now."""
        return self._served

    @contextlib.contextmanager
    def reading(self) -> Iterator[ServedVersion]:
        """Count a search as a reader of the served slot while it runs."""
        with self._readers_cv:
            state = self._served
            self._readers[state.slot] += 1
        try:
            yield state
        finally:
            with self._readers_cv:
                self._readers[state.slot] -= 1
                self._readers_cv.notify_all()

    def _wait_for_readers(self, slot: str, version: int) -> None:
        """Block until no search reads ``slot`` (no timeout: a slot is never rewritten under
        a search, however slow); warn every ``slot_wait_warn_s`` seconds meanwhile. Cannot
        deadlock: a search holds no engine lock while it counts as a reader.

        Raises:
            AdaptationError: :meth:`close` was called while waiting (nothing was changed).
        """
        with self._readers_cv:
            while not self._readers_cv.wait_for(lambda: self._closed or self._readers[slot] == 0, timeout=self.slot_wait_warn_s):
                logger.warning("promotion to version %d waits for %d search(es) still reading slot %s", version, self._readers[slot], slot)
            if self._closed:
                raise AdaptationError(f"engine closed while version {version} waited for searches on slot {slot}; version {self._served.version} is still the served one")

    def close(self) -> None:
        """Make a promotion waiting for searches give up (AdaptationError). Idempotent."""
        with self._readers_cv:
            self._closed = True
            self._readers_cv.notify_all()

    # -- writes -------------------------------------------------------------------------
    def served_vectors(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        """What to store in each served slot for new raw vectors ``(n, d) float32``: the
        slot's doc adapter applied, for every slot holding one (the served slot and the
        previously served one, so a search on either finds new documents too). A slot holding
        no doc adapter gets nothing: identity versions (version 0, query-only adapters) are
        served from ``raw``, and a promotion materialises its whole slot before serving it, so
        a copy of ``raw`` there would never be read — and would triple the vectors, the HNSW
        graphs and the index build of a store that has never promoted (measured at 1M
        documents: docs/performance.md)."""
        out = {}
        for slot in SLOTS:
            content = self._slot_content.get(slot)
            if content is not None and content.doc_adapter is not None:
                out[slot] = content.doc_adapter.transform(raw)
        return out

    def next_version(self) -> int:
        """A new version number, above every version known here or on disk."""
        with self._readers_cv:
            self._counter = max(self._counter, max(self._versions)) + 1
            return self._counter

    def activate(self, doc_adapter: ResidualAdapter | None, query_adapter: ResidualAdapter | None, *, version: int,
                 meta: dict[str, Any] | None = None, raw: tuple[list[str], np.ndarray] | None = None) -> ServedVersion:
        """Materialise ``doc_adapter(raw)`` into the idle slot and switch searches to it in one
        step (``None`` adapters = identity; no doc adapter serves the raw vectors). Ingest
        waits while this runs; searches do not. Searches still reading the idle slot are
        waited for without a timeout before it is rewritten.

        With persistence, a version not yet on disk is first saved as a checkpoint, and
        ``active.json`` is updated after the slot is fully written and before searches
        switch, so a crash at any point leaves a consistent version to restore.

        Raises:
            AdaptationError: closed while waiting for searches; nothing served changed.
        """
        rewrote = False
        with self.write_lock:
            meta = dict(meta or {})
            if self.adapters is not None and version != 0 and not self.adapters.meta_path(version).exists():
                meta = self.adapters.save(version, doc_adapter, query_adapter, self._checkpoint_meta(meta))
            if doc_adapter is None:
                new = ServedVersion(version, RAW, None, query_adapter, meta)
            elif doc_adapter is self._served.doc_adapter:  # documents unchanged: reuse the served slot
                new = ServedVersion(version, self._served.slot, doc_adapter, query_adapter, meta)
            else:
                target = SLOTS[1] if self._served.slot == SLOTS[0] else SLOTS[0]
                self._wait_for_readers(target, version)
                self._slot_content.pop(target, None)  # half-written until the loop ends
                self.store.clear_served(target)  # the whole slot is written next: into an empty one, not over an indexed one
                self._materialise(target, doc_adapter, raw)
                new = ServedVersion(version, target, doc_adapter, query_adapter, meta)
                self._slot_content[target] = new
                rewrote = True
            history = [v for v in self._history if v != version] + [version]
            if self.adapters is not None:
                self.adapters.set_active(version, new.slot, history)
            with self._readers_cv:
                self._served = new
                self._versions[version] = new
                self._history = history
            logger.info("serving adapter version %d from %s", version, new.slot)
        if rewrote:
            self._on_slot_rewritten()
        return new

    def rollback(self, version: int | None, *, student: str, dim: int) -> ServedVersion:
        """Serve ``version`` again, or the one promoted before the current one (0 = frozen
        student); versions of an earlier run are loaded from their checkpoints.

        Raises:
            AdaptationError: unknown version, or nothing to roll back to.
            CheckpointError: the checkpoint is corrupt or made for another student.
        A refused rollback changes nothing: neither the served version nor the history.
        """
        previous = version is None  # roll back past the current version: it leaves the history
        if previous:
            if len(self._history) < 2:
                raise AdaptationError("nothing to roll back to: only the frozen student has been served")
            version = self._history[-2]
        if isinstance(version, bool) or not isinstance(version, int):
            raise AdaptationError(f"adapter version must be an int, got {version!r}")
        old = self._versions.get(version)
        if old is None and self.adapters is not None and version in self.adapters.versions():
            ckpt = self.adapters.load(version, student=student, dim=dim)
            old = ServedVersion(version, RAW, ckpt.doc_adapter, ckpt.query_adapter, ckpt.meta)
        if old is None:
            raise AdaptationError(f"unknown adapter version {version}; known: {self.versions()}")
        history = self._history
        if previous:
            self._history = history[:-1]  # activate() appends `version` back
        try:
            return self.activate(old.doc_adapter, old.query_adapter, version=version, meta=old.meta)
        except BaseException:
            self._history = history  # refused: the history is as it was
            raise

    def versions(self) -> list[int]:
        """Versions that can be served: in memory or saved on disk (0 = frozen student)."""
        on_disk = set(self.adapters.versions()) if self.adapters is not None else set()
        return sorted(set(self._versions) | on_disk)

    # -- restore on open -----------------------------------------------------------------
    def load_active(self, active: dict[str, Any], *, student: str, dim: int):
        """Load (and check against the running student) the checkpoint ``active.json`` names;
        ``None`` for version 0. Raises CheckpointError."""
        assert self.adapters is not None
        self._counter = self.adapters.max_version()
        self._history = [int(v) for v in active["history"]] or [0]
        version = active["version"]
        if version == 0:
            return None
        if version not in self.adapters.versions():
            raise CheckpointError(
                f"{self.adapters.active_path} names adapter version {version}, but {self.adapters.meta_path(version).name} is missing from "
                f"{self.adapters.dir} (on disk: {self.adapters.versions()}); restore it from a backup, or delete active.json to serve the frozen student"
            )
        return self.adapters.load(version, student=student, dim=dim)

    def restore(self, active: dict[str, Any], ckpt: Any) -> None:
        """Serve the version ``active.json`` names (its checkpoint loaded and checked)."""
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
        """Check ``state.slot`` against the raw vectors: it must hold a vector for every stored
        document (count), and its first ``sample`` documents must equal ``doc_adapter(raw)``;
        otherwise re-materialise it (a slot restored from an older backup than the raw vectors
        would serve without the newest documents), counted as ``slots_rematerialised``. An
        embedded store's slot is cleared first (a slot shard newer than the raw one would serve
        documents deleted since); a server's is not (other workers may be searching it, and its
        slots are named vectors of each point, so a delete removes every one). Nothing is done
        for an empty store.

        Raises:
            StoreError: an embedded store's slot still holds a different number of vectors
                than the store documents after re-materialising."""
        batch = next(iter(self.store.iter_vectors((RAW, state.slot), batch_size=sample)), None)
        if batch is None:
            return
        _, mats = batch
        n_raw, n_slot = self.store.count(), self.store.count_vectors(state.slot)
        if n_slot != n_raw or np.abs(state.doc_adapter.transform(mats[RAW]) - mats[state.slot]).max() > 1e-4:
            logger.warning("slot %s does not hold adapter version %d (%d of %d documents); re-materialising it", state.slot, state.version, n_slot, n_raw)
            exclusive = not self.store.remote  # an embedded store: no other process reads the slot or writes meanwhile
            if exclusive:  # a slot shard restored apart from the raw one may hold documents deleted since: they must not stay searchable
                self.store.clear_served(state.slot)  # (a server keeps the slots as named vectors of each point: a delete removes all)
            self._materialise(state.slot, state.doc_adapter)
            self._counters.count("slots_rematerialised")
            if exclusive:
                n_slot, n_raw = self.store.count_vectors(state.slot), self.store.count()
                if n_slot != n_raw:
                    raise StoreError(f"slot {state.slot} holds {n_slot} vectors after re-materialising, but the store holds {n_raw} documents")

    def _materialise(self, slot: str, doc_adapter: ResidualAdapter, raw: tuple[list[str], np.ndarray] | None = None, batch: int = 4096) -> None:
        """Write ``doc_adapter(raw)`` into ``slot`` for every document: from ``raw`` when
        given, else streamed from the store in batches of ``batch`` (memory O(batch · d),
        not O(corpus))."""
        if raw is not None:
            ids, mat = raw
            chunks = ((ids[i : i + batch], mat[i : i + batch]) for i in range(0, len(ids), batch))
        else:
            chunks = ((b_ids, b[RAW]) for b_ids, b in self.store.iter_vectors((RAW,), batch_size=batch))
        for b_ids, b_raw in chunks:
            self.store.set_served(b_ids, slot, doc_adapter.transform(b_raw))
