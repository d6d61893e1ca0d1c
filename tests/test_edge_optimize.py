"""``EdgeStore.optimize`` builds the HNSW index in a child process on a copy of the shard and
swaps it in: searches keep answering while it builds, writes wait and are kept, a failed build
changes nothing, and a crash at any point of the swap is recovered on open."""

from __future__ import annotations

import os
import shutil
import threading
import time

import numpy as np
import pytest

from antigravity.core.errors import StoreError
from antigravity.stores import edge as edge_mod
from antigravity.stores.base import RAW, SLOTS
from tests.test_store_congruence import CORPUS, D, N, _unit, assert_same_snapshot, load, snapshot

pytest.importorskip("qdrant_edge")
EdgeStore = edge_mod.EdgeStore

SLOW_BUILD = "import time; time.sleep(3)\n" + edge_mod._BUILD_CHILD


def _store(path, **kw) -> EdgeStore:
    return EdgeStore(str(path), collection="c", indexing_threshold=1, full_scan_threshold=1, **kw)


def test_searches_keep_answering_while_the_index_is_built(tmp_path, monkeypatch):
    monkeypatch.setattr(edge_mod, "_BUILD_CHILD", SLOW_BUILD)
    store = load(_store(tmp_path))
    try:
        q = CORPUS["queries"]
        before = store.search(q, SLOTS[0], 10)
        t = threading.Thread(target=store.optimize)
        t.start()
        during = 0
        while t.is_alive():
            assert store.search(q[:1], SLOTS[0], 10) == before[:1]
            during += 1
        t.join()
        assert during >= 20, during  # the 3 s build did not stall this thread
        assert store.indexed_vectors_count() >= 2 * N
        assert store.search(q, SLOTS[0], 10) == before  # small corpus: HNSW top-10 = exact top-10
        assert not (tmp_path / ".c.optimizing").exists() and not (tmp_path / ".c.replaced").exists()
    finally:
        store.close()


def test_writes_during_the_build_wait_and_are_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(edge_mod, "_BUILD_CHILD", SLOW_BUILD)
    store = load(_store(tmp_path))
    try:
        t = threading.Thread(target=store.optimize)
        t.start()
        time.sleep(0.5)
        late = _unit(np.random.default_rng(3).standard_normal((2, D)))
        store.upsert(["late-0", "late-1"], late, [{}, {}], {SLOTS[0]: late})  # waits for the swap
        assert not t.is_alive()
        store.delete(["doc-000"])
        assert store.count() == N + 1
        assert [h[0][0] for h in store.search(late, SLOTS[0], 1)] == ["late-0", "late-1"]
        store.close()
        store = _store(tmp_path)  # and after a restart
        assert store.count() == N + 1 and store.retrieve(["doc-000"]) == {} and set(store.retrieve(["late-0", "late-1"])) == {"late-0", "late-1"}
    finally:
        store.close()


@pytest.mark.parametrize("child", ["import sys; sys.exit('index build refused')", "import os; os._exit(9)"])
def test_a_failed_build_changes_nothing(tmp_path, monkeypatch, child):
    store = load(_store(tmp_path))
    try:
        want = snapshot(store)
        monkeypatch.setattr(edge_mod, "_BUILD_CHILD", child)
        with pytest.raises(StoreError, match="index build process exited with .*the served shard is unchanged") as info:
            store.optimize()
        assert "\n" not in str(info.value)
        assert_same_snapshot(snapshot(store), want, "after a failed build")
        assert store.indexed_vectors_count() == 0
        assert not (tmp_path / ".c.optimizing").exists()
        monkeypatch.undo()
        store.optimize()  # and the next one works
        assert store.indexed_vectors_count() >= 2 * N
        assert_same_snapshot(snapshot(store), want, "after the build")
    finally:
        store.close()


def test_open_recovers_from_a_crash_at_each_step_of_the_swap(tmp_path):
    store = load(_store(tmp_path))
    want = snapshot(store)
    store.close()
    shard, build, replaced = tmp_path / "c", tmp_path / ".c.optimizing", tmp_path / ".c.replaced"
    # crashed while building: a half-made copy is removed
    shutil.copytree(shard, build)
    shutil.rmtree(build / "segments")
    s = _store(tmp_path)
    assert_same_snapshot(snapshot(s), want, "half-built copy")
    s.close()
    assert not build.exists()
    # crashed between the two renames: the shard moved aside is moved back
    os.rename(shard, replaced)
    s = _store(tmp_path)
    assert_same_snapshot(snapshot(s), want, "between the renames")
    s.close()
    assert shard.exists() and not replaced.exists()
    # crashed after the swap, before the old shard was removed: the leftover is removed
    shutil.copytree(shard, replaced)
    s = _store(tmp_path)
    assert_same_snapshot(snapshot(s), want, "after the swap")
    s.close()
    assert not replaced.exists()


def test_in_process_build_remains_available(tmp_path):
    store = load(_store(tmp_path, optimize_in_subprocess=False))
    try:
        want = store.search(CORPUS["queries"], RAW, 10)
        store.optimize()
        assert store.indexed_vectors_count() >= 2 * N
        assert store.search(CORPUS["queries"], RAW, 10) == want
    finally:
        store.close()
