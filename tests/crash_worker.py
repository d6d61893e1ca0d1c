"""Subprocess for the kill -9 tests (tests/test_crash.py): runs one kind of work on a
persistent engine and prints a marker line (flushed) at each point where the parent may
SIGKILL it; after each marker it sleeps so the kill lands *at* that point.

    python -m tests.crash_worker DATA_DIR WORK POINT

WORK: ingest | cycle | distill | delete | feedback. POINT: the marker after which the worker
stalls (``none`` = never stall). Acknowledged ingests print ``ACK <ids>`` once ``ingest``
returns; acknowledged feedback prints ``ACK <n>`` after each ``feedback`` call returns
(row n: :func:`feedback_row`), then ``BATCH`` before one ``feedback_batch`` of
``FEEDBACK_BATCH`` rows and ``ACK BATCH`` after it — the stream never stalls, the parent kills
it while it writes; ``batch_in_transaction`` marks the batch inserted but not committed.
``between_shards_<n>`` marks the n-th write to a served slot's shard, after the raw shard's
part of the same (journaled) upsert or delete was written.
"""

from __future__ import annotations

import itertools
import sys
import time

from antigravity import AntigravityEngine
from tests.conftest import HashEncoder
from tests.test_distillation import SpyTeacher
from tests.test_sedimentation import _corpus, _queries

STALL_S = 30.0
DELETE_IDS = [f"d{i}" for i in range(0, 120, 3)]  # 40 of the 120 prepared documents
FEEDBACK_SINGLE, FEEDBACK_BATCH = 400, 3000


def feedback_row(n: int) -> dict:
    """Feedback row ``n`` of the worker (distinct queries: no row replaces another)."""
    return {"query": f"crash query {n}", "doc_id": f"d{n % 120}", "relevance": n % 4, "source": "click", "rank": 1 + n % 10}


def open_engine(data_dir: str, teacher=None) -> AntigravityEngine:
    return AntigravityEngine(
        data_dir=data_dir, store__location=f"{data_dir}/qdrant", encoder=HashEncoder(32), teacher=teacher,
        adaptation__rank=8, adaptation__epochs=5, adaptation__signal="anisotropy", gate__enabled=False,
    )


def main() -> None:
    data_dir, work, point = sys.argv[1:4]

    def mark(name: str) -> None:
        print(name, flush=True)
        if name == point:
            time.sleep(STALL_S)  # the parent kills us here

    e = open_engine(data_dir, SpyTeacher())
    store, registry = e.store, e.adapters
    orig_set_served, orig_set_active, orig_save = store.set_served, registry.set_active, registry.save

    def set_served(ids, slot, vecs):  # write half the slot, stall, write the rest
        half = len(ids) // 2
        orig_set_served(ids[:half], slot, vecs[:half])
        mark("materialise_half")
        orig_set_served(ids[half:], slot, vecs[half:])

    def set_active(*a, **k):
        mark("before_active")
        orig_set_active(*a, **k)
        mark("after_active")

    def save(*a, **k):
        out = orig_save(*a, **k)
        mark("checkpoint_saved")
        return out

    store.set_served, registry.set_active, registry.save = set_served, set_active, save
    writes = itertools.count(1)

    class MarkedShard:
        """A slot shard of the Edge store that marks each write before doing it."""

        def __init__(self, shard) -> None:
            self._shard = shard

        def update(self, op):
            mark(f"between_shards_{next(writes)}")
            return self._shard.update(op)

        def __getattr__(self, name):
            return getattr(self._shard, name)

    shards = store._handle.shards if hasattr(store, "_handle") else {}  # EdgeStore: {vector name: shard}
    for slot in [n for n in shards if n != "raw"]:
        shards[slot] = MarkedShard(shards[slot])
    if work == "ingest":
        docs = _corpus(200)
        for i in range(0, len(docs), 20):
            batch = docs[i : i + 20]
            mark(f"ingest_{i}")
            e.ingest(batch, batch_size=7)  # several upserts per call
            print("ACK " + " ".join(d for d, _ in batch), flush=True)
        mark("ingest_done")
    elif work == "cycle":
        e.search_batch(_queries(seed=11))
        mark("cycle_start")
        rep = e.run_sedimentation_cycle()
        print(f"CYCLE {rep.promoted} {rep.version}", flush=True)
    elif work == "delete":
        orig_delete = store.delete

        def delete(ids):
            mark("before_delete")  # the manifest's lower bound is already lowered
            orig_delete(ids)
            mark("after_delete")

        store.delete = delete
        mark("delete_start")
        n = e.delete(DELETE_IDS)
        print(f"DELETED {n}", flush=True)
    elif work == "feedback":
        for n in range(FEEDBACK_SINGLE):
            e.feedback(**feedback_row(n))
            print(f"ACK {n}", flush=True)
        print("BATCH", flush=True)
        fb, total = e.feedback_store, e.feedback_store._total
        fb._total = lambda conn, name: (mark("batch_in_transaction"), total(conn, name))[1]  # after the inserts, before COMMIT
        e.feedback_batch([feedback_row(n) for n in range(FEEDBACK_SINGLE, FEEDBACK_SINGLE + FEEDBACK_BATCH)])
        print("ACK BATCH", flush=True)
    elif work == "distill":
        mark("distill_start")
        rep = e.run_offline_distillation(_queries(seed=12))
        print(f"DISTILL {rep.promoted} {rep.version}", flush=True)
    mark("done")
    e.close()


if __name__ == "__main__":
    main()
