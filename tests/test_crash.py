"""Crash safety for real: a subprocess (tests/crash_worker.py) ingests, runs a sedimentation
cycle or an offline distillation, deletes or records relevance feedback on a persistent
engine and is killed with SIGKILL at a marked point; the restarted engine must hold every
acknowledged document (and feedback row) exactly once, serve vectors of one adapter version
consistent with ``active.json`` and its checkpoint, and be able to rerun the interrupted work."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from antigravity.serving.checkpoints import AdapterRegistry
from antigravity.stores.qdrant import RAW, SLOTS
from tests.crash_worker import open_engine
from tests.test_sedimentation import _corpus, _queries

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")


def _prepare(tmp_path) -> str:
    """120 documents and a promoted version 1 that moves documents (served from a slot)."""
    d = str(tmp_path)
    e = open_engine(d)
    e.ingest(_corpus(120))
    e.search_batch(_queries())
    assert e.run_sedimentation_cycle().promoted
    assert e.served_version.slot in SLOTS
    e.close()
    return d


def _run_and_kill(data_dir: str, work: str, point: str) -> list[str]:
    """Start the worker, SIGKILL it right after it prints ``point``; returns its stdout lines."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.crash_worker", data_dir, work, point],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line.strip())
            if line.strip() == point:
                os.kill(proc.pid, signal.SIGKILL)
                break
        proc.wait(timeout=120)
        lines += [x.strip() for x in proc.stdout.read().splitlines()]  # what it printed before the kill landed
    finally:
        if proc.poll() is None:
            proc.kill()
    assert point in lines, f"worker never reached {point!r}: stdout {lines} stderr {proc.stderr.read()[-2000:]}"
    assert proc.returncode == -signal.SIGKILL
    return lines


def _check_consistent(data_dir: str) -> "object":
    """The invariants after a restart; returns the reopened engine."""
    e = open_engine(data_dir)
    reg = AdapterRegistry(data_dir, "antigravity")
    state = e.served_version
    active = reg.active()
    assert state.version == active["version"]
    if state.version:
        meta = reg.read_meta(state.version)
        assert meta["student"] == {"name": "hash-encoder", "dim": 32} and meta["version"] == state.version
    ids, raw, served = [], [], []
    for b_ids, mats in e.store.iter_vectors((RAW, state.slot)):
        ids += b_ids
        raw.append(mats[RAW])
        served.append(mats[state.slot])
    assert len(ids) == len(set(ids)) == e.count()  # each document exactly once
    raw, served = np.concatenate(raw), np.concatenate(served)
    expected = state.doc_adapter.transform(raw) if state.doc_adapter is not None else raw
    np.testing.assert_allclose(served, expected, atol=1e-5)  # every served vector from one version
    return e


@pytest.mark.parametrize("point", ["ingest_20", "ingest_100", "between_shards_19", "ingest_done"])
def test_kill_during_ingest(tmp_path, point):
    """``between_shards_19``: killed inside the upsert of d120-d126 (new documents), after their
    raw vectors were written and before their slot vectors: the journal completes it on open."""
    d = _prepare(tmp_path)
    lines = _run_and_kill(d, "ingest", point)
    acked = [x for line in lines if line.startswith("ACK ") for x in line.split()[1:]]
    assert len(acked) == {"ingest_20": 20, "ingest_100": 100, "between_shards_19": 120, "ingest_done": 200}[point]
    e = _check_consistent(d)
    assert e.stats().get("slots_rematerialised", 0) == 0  # the journal made the shards agree; no slot rebuilt from raw
    present = {doc_id for doc_id, _ in e.store.iter_payloads()}
    assert set(acked) <= present and set(f"d{i}" for i in range(120)) <= present
    # rerun the interrupted ingest: idempotent, no duplicates
    e.ingest(_corpus(200))
    assert e.count() == 200
    e.close()
    _check_consistent(d).close()


@pytest.mark.parametrize("point", ["cycle_start", "checkpoint_saved", "materialise_half", "before_active", "after_active"])
def test_kill_during_sedimentation_cycle(tmp_path, point):
    d = _prepare(tmp_path)
    lines = _run_and_kill(d, "cycle", point)
    order = ["cycle_start", "checkpoint_saved", "materialise_half", "before_active", "after_active"]
    assert [x for x in lines if x in order] == order[: order.index(point) + 1]  # killed where intended
    e = _check_consistent(d)
    expected = 2 if point == "after_active" else 1
    assert e.served_version.version == expected
    # version 2's checkpoint is on disk (saved before materialising) unless killed before it
    assert AdapterRegistry(d, "antigravity").versions() == ([1] if point == "cycle_start" else [1, 2])
    # rerun: a new cycle promotes a version numbered above everything on disk
    e.search_batch(_queries(seed=11))
    rep = e.run_sedimentation_cycle()
    assert rep.promoted and rep.version == max(AdapterRegistry(d, "antigravity").versions())
    assert rep.version >= 2
    e.close()
    _check_consistent(d).close()


@pytest.mark.parametrize("point", ["distill_start", "materialise_half", "before_active"])
def test_kill_during_offline_distillation(tmp_path, point):
    d = _prepare(tmp_path)
    _run_and_kill(d, "distill", point)
    e = _check_consistent(d)
    assert e.served_version.version == 1
    from tests.test_distillation import SpyTeacher

    rep = e.run_offline_distillation(_queries(seed=12), teacher=SpyTeacher())
    assert rep.metrics["n_texts"] > 0
    e.close()
    e = _check_consistent(d)
    if rep.promoted:
        assert e.served_version.version == rep.version
    e.close()


@pytest.mark.parametrize("point", ["delete_start", "before_delete", "between_shards_1", "after_delete"])
def test_kill_during_delete(tmp_path, point):
    """A delete is one store operation on whole points (every served slot at once): after a
    kill the ids are either all stored or all gone, the store opens consistent, and the
    delete can be re-run."""
    from tests.crash_worker import DELETE_IDS

    d = _prepare(tmp_path)
    _run_and_kill(d, "delete", point)
    e = _check_consistent(d)
    present = {doc_id for doc_id, _ in e.store.iter_payloads()}
    gone = set(DELETE_IDS) - present
    assert gone in (set(), set(DELETE_IDS)), f"partly deleted: {len(gone)} of {len(DELETE_IDS)}"
    assert (gone == set(DELETE_IDS)) == (point in ("between_shards_1", "after_delete"))  # a delete cut between shards is completed on open
    e.delete(DELETE_IDS)
    assert e.count() == 120 - len(DELETE_IDS)
    hits = e.search("fever aspirin", k=200, record=False)
    assert len(hits) == 120 - len(DELETE_IDS) and not {h.doc_id for h in hits} & set(DELETE_IDS)
    e.close()
    e = _check_consistent(d)  # reopens: the manifest bound and the store agree
    assert e.count() == 120 - len(DELETE_IDS)
    e.close()


@pytest.mark.parametrize("point", ["ACK 150", "BATCH", "batch_in_transaction"])
def test_kill_during_feedback(tmp_path, point):
    """Feedback is committed (WAL, synchronous=FULL) before ``feedback`` returns: every row
    acknowledged before SIGKILL is in the database after reopening, and the batch written when
    the kill landed is there entirely or not at all (one transaction)."""
    import sqlite3

    from tests.crash_worker import FEEDBACK_BATCH, FEEDBACK_SINGLE, feedback_row

    d = str(tmp_path)
    e = open_engine(d)
    e.ingest(_corpus(120))
    e.close()
    lines = _run_and_kill(d, "feedback", point)
    acked = [int(x.split()[1]) for x in lines if x.startswith("ACK ") and x != "ACK BATCH"]
    assert acked == list(range(len(acked))) and len(acked) >= (151 if point == "ACK 150" else FEEDBACK_SINGLE)
    path = tmp_path / "feedback" / "antigravity.sqlite"
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    e = open_engine(d)
    stored = {(r["query"], r["doc_id"], r["relevance"], r["rank"]) for r in e.feedback_store.export()}
    assert e.feedback_store.count() == len(stored)
    assert {(r["query"], r["doc_id"], r["relevance"], r["rank"]) for r in map(feedback_row, acked)} <= stored  # nothing acknowledged lost
    batch = {f"crash query {n}" for n in range(FEEDBACK_SINGLE, FEEDBACK_SINGLE + FEEDBACK_BATCH)}
    in_batch = sum(1 for q, *_ in stored if q in batch)
    assert in_batch in (0, FEEDBACK_BATCH), f"a partly written batch: {in_batch} of {FEEDBACK_BATCH}"
    assert in_batch == FEEDBACK_BATCH or "ACK BATCH" not in lines
    if point == "batch_in_transaction":  # killed with every row of the batch inserted, before COMMIT
        assert in_batch == 0 and len(stored) == FEEDBACK_SINGLE
    e.feedback(**feedback_row(0))  # writable again; the same row replaces itself
    assert e.feedback_store.count() == len(stored) and e.stats()["feedback"]["replaced"] == 1
    e.close()
