"""Concurrent searches are combined into one encoder batch (serving.search.Coalescer):
every caller gets exactly its own rows, errors reach every caller of the failed batch, and
an engine searched from 8 threads returns what it returns from one."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from antigravity.serving.search import Coalescer
from tests.conftest import TOY_DOCS


def test_each_caller_gets_its_own_rows_and_calls_are_batched():
    batches: list[int] = []

    def run(items):
        batches.append(len(items))
        time.sleep(0.05)  # long enough for the other callers to queue behind this batch
        return np.array([[float(x)] for x in items])

    co = Coalescer(run)
    out: dict[int, np.ndarray] = {}
    start = threading.Barrier(8)

    def call(i):
        start.wait()
        out[i] = co([i * 10, i * 10 + 1])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert all(out[i].ravel().tolist() == [i * 10, i * 10 + 1] for i in range(8))
    assert sum(batches) == 16 and max(batches) > 2 and len(batches) < 8  # combined, nothing lost


def test_an_error_reaches_every_caller_of_the_batch_and_the_next_batch_runs():
    calls = {"n": 0}

    def run(items):
        calls["n"] += 1
        if calls["n"] == 1:
            time.sleep(0.05)
            raise RuntimeError("encoder failed")
        return np.zeros((len(items), 1))

    co = Coalescer(run)
    errors, ok = [], []

    def call():
        try:
            ok.append(co(["q"]).shape)
        except RuntimeError as exc:
            errors.append(str(exc))

    first = threading.Thread(target=call)
    first.start()
    time.sleep(0.01)
    rest = [threading.Thread(target=call) for _ in range(3)]
    for t in rest:
        t.start()
    for t in [first, *rest]:
        t.join(10)
    assert errors and errors[0] == "encoder failed" and len(errors) + len(ok) == 4
    assert co(["q"]).shape == (1, 1)  # not stuck after a failure


def test_engine_from_8_threads_answers_as_from_one(engine):
    engine.ingest(TOY_DOCS)
    queries = ["aspirin fever", "cats sleep", "vaccines virus", "loyal dogs", "raised temperature"] * 4
    ref = {q: [(h.doc_id, round(h.score, 5)) for h in engine.search(q, k=3, record=False)] for q in set(queries)}
    got: list[tuple[str, list]] = []
    start = threading.Barrier(8)

    def worker(i):
        start.wait()
        for q in queries[i::8] * 5:
            got.append((q, [(h.doc_id, round(h.score, 5)) for h in engine.search(q, k=3, record=False)]))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(got) == 100 and all(hits == ref[q] for q, hits in got)
