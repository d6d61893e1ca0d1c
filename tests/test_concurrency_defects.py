"""Issue 11, item 7: two concurrency defects, each with a test that fails on the old code.

1. ``activate`` waited at most 60 s for searches still reading the idle slot, then
   overwrote the slot under them. A promotion now waits until those searches finish
   (interruptible by ``close()``), so a held search sees one version only.
2. ``_stats[...] += n`` ran unlocked from search threads, so counts were lost.
"""

from __future__ import annotations

import collections
import sys
import threading
import time

import numpy as np
import torch

from antigravity.adaptation.adapter import ResidualAdapter
from antigravity.core.errors import AdaptationError
from tests.conftest import TOY_DOCS

QUERIES = ["aspirin fever", "cats sleep", "dogs walks", "pain relief", "sleep"]


class _ExpiringCondition(threading.Condition):
    """Every wait on the readers' condition ends within 0.1 s (a timed wait times out, an
    untimed one wakes up spuriously): a search held open for 1 s outlasts any timeout the
    engine could pass, without the test waiting 60 s. A correct wait re-checks and goes on."""

    def wait(self, timeout=None):
        return super().wait(0.05 if timeout is None else min(timeout, 0.05))

    def wait_for(self, predicate, timeout=None):
        return super().wait_for(predicate, None if timeout is None else min(timeout, 0.1))


def _adapter(dim: int, seed: int) -> ResidualAdapter:
    torch.manual_seed(seed)
    ad = ResidualAdapter(dim, 4)
    with torch.no_grad():
        ad.up.weight.normal_(std=1.0)  # far from identity: each version ranks differently
    return ad


def _hold_next_search(engine, monkeypatch):
    """Patch the store so the next search answers its first query, then stays open (still
    counted as a reader of its slot) until ``release`` is set, then answers the rest."""
    real_search, real_set = engine.store.search, engine.store.set_served
    held, release = threading.Event(), threading.Event()
    pending = [True]
    writes: list[tuple[str, bool]] = []  # (slot, written while the search was held open)

    def search(vectors, using, k):
        if not pending[0]:
            return real_search(vectors, using, k)
        pending[0] = False
        first = real_search(vectors[:1], using, k)
        held.set()
        release.wait(30)
        return first + real_search(vectors[1:], using, k)

    def set_served(ids, slot, vectors):
        writes.append((slot, held.is_set() and not release.is_set()))
        return real_set(ids, slot, vectors)

    monkeypatch.setattr(engine.store, "search", search)
    monkeypatch.setattr(engine.store, "set_served", set_served)
    return held, release, writes


def _summary(batch):
    return [[(h.doc_id, round(h.score, 5)) for h in hits] for hits in batch]


def test_promotion_waits_for_a_search_held_longer_than_any_timeout(engine, monkeypatch):
    engine.ingest(TOY_DOCS)
    engine.versions._readers_cv = _ExpiringCondition()
    monkeypatch.setattr(engine.versions, "slot_wait_warn_s", 0.05)  # shortened "still waiting" interval
    dim = engine.encoder.dim
    a1, a2, a3 = _adapter(dim, 1), _adapter(dim, 2), _adapter(dim, 3)
    engine.activate(a1, None, version=1)
    reference = _summary(engine.search_batch(QUERIES, k=5, record=False))  # version 1's answers
    engine.activate(a3, None, version=99)  # sanity: version 3's doc vectors rank differently
    assert _summary(engine.search_batch(QUERIES, k=5, record=False)) != reference
    engine.activate(a1, None, version=1)
    slot1 = engine.served_version.slot

    held, release, writes = _hold_next_search(engine, monkeypatch)
    out: dict = {}
    searcher = threading.Thread(target=lambda: out.setdefault("hits", engine.search_batch(QUERIES, k=5, record=False)))
    searcher.start()
    assert held.wait(10)
    errors: list[BaseException] = []

    def promote():
        try:
            engine.activate(a2, None, version=2)  # the other slot: nobody reads it
            engine.activate(a3, None, version=3)  # back into slot1, which the held search reads
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    promoter = threading.Thread(target=promote)
    promoter.start()
    time.sleep(1.0)  # 10x every wait timeout the engine may use
    try:
        assert not any(slot == slot1 and during for slot, during in writes), "slot rewritten under a held search"
        assert promoter.is_alive() and engine.served_version.version == 2  # version 3 waits for the search
    finally:
        release.set()
        searcher.join(30)
        promoter.join(30)
    assert not errors, errors
    assert _summary(out["hits"]) == reference  # every query of the held search saw version 1
    assert engine.served_version.version == 3 and engine.served_version.slot == slot1
    assert any(slot == slot1 and not during for slot, during in writes)  # written after the search ended


def test_close_interrupts_a_waiting_promotion(engine, monkeypatch):
    engine.ingest(TOY_DOCS)
    engine.versions._readers_cv = _ExpiringCondition()
    dim = engine.encoder.dim
    a1, a2, a3 = _adapter(dim, 1), _adapter(dim, 2), _adapter(dim, 3)
    engine.activate(a1, None, version=1)
    slot1 = engine.served_version.slot
    held, release, writes = _hold_next_search(engine, monkeypatch)

    def held_search():
        try:
            engine.search_batch(QUERIES, k=5, record=False)
        except Exception:  # noqa: BLE001 - the store is closed under it; only the promotion matters here
            pass

    searcher = threading.Thread(target=held_search)
    searcher.start()
    assert held.wait(10)
    engine.activate(a2, None, version=2)
    errors: list[BaseException] = []

    def promote():
        try:
            engine.activate(a3, None, version=3)  # into slot1: waits for the held search
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    promoter = threading.Thread(target=promote)
    promoter.start()
    time.sleep(0.5)
    try:
        assert promoter.is_alive()
        engine.close()
        promoter.join(10)
        assert not promoter.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], AdaptationError) and "closed" in str(errors[0])
        assert engine.served_version.version == 2  # nothing changed
        assert not any(slot == slot1 for slot, _ in writes)
    finally:
        release.set()
        searcher.join(30)


class _RacyStats(collections.defaultdict):
    """counter values whose reads yield the processor: ``d[k] += n`` reads, then writes; another
    thread running in between makes an unlocked increment lose counts almost every time."""

    def __getitem__(self, key):
        value = super().__getitem__(key)
        time.sleep(0)
        return value


def test_stat_counts_exact_under_8_search_threads(engine, monkeypatch):
    engine.ingest(TOY_DOCS)
    racy = _RacyStats(int)
    racy.update(engine.counters._values)
    engine.counters._values = racy
    monkeypatch.setattr(engine.store, "search", lambda vectors, using, k: [[] for _ in range(len(vectors))])
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    before = engine.stats()
    raw = engine.encode_queries(["aspirin fever"])
    n_threads, n_calls = 8, 300
    start = threading.Barrier(n_threads)

    def worker():
        start.wait()
        for _ in range(n_calls):
            engine.search_vectors(raw, k=1, record=True)

    try:
        threads = [threading.Thread(target=worker) for _ in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    after = engine.stats()
    n = n_threads * n_calls
    assert after["queries_served"] - before.get("queries_served", 0) == n
    assert after["signals_recorded"] - before.get("signals_recorded", 0) == n


def test_document_ingested_during_a_cycle_is_served_under_the_promoted_version(engine):
    """A promotion used to write the new slot only for the documents of the cycle's snapshot:
    a document ingested while the cycle trained kept the previous version's vector in the new
    slot. Activation now streams every stored raw vector under the write lock."""
    from antigravity.adaptation.context import AdaptationReport
    from antigravity.stores.base import RAW

    engine.ingest(TOY_DOCS)
    ctx = engine.adaptation_context()  # the cycle's snapshot: 5 documents
    engine.ingest([{"_id": "late", "title": "Late", "text": "A document that arrived during training about fever."}])
    a = _adapter(engine.encoder.dim, 7)
    report = AdaptationReport(None, False, "test candidate", ok=True, current=ctx.current, candidate=(None, a))
    assert engine.runner.promote(report).promoted
    rec = engine.get("late", with_vectors=True)
    np.testing.assert_allclose(rec["vectors"]["served"], a.transform(rec["vectors"]["raw"][None])[0], atol=1e-5)
    assert engine.served_version.slot != RAW
