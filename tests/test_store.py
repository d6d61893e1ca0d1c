import numpy as np
import pytest

from antigravity.core.errors import StoreError
from antigravity.stores.qdrant import RAW, SLOTS, QdrantStore, point_id


def _vecs(n, d, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_point_id_deterministic():
    assert point_id("abc") == point_id("abc") != point_id("abd")


def test_roundtrip_memory():
    s = QdrantStore(":memory:", collection="c")
    s.ensure_collection(8)
    x = _vecs(5, 8)
    s.upsert([f"d{i}" for i in range(5)], x, [{"i": i} for i in range(5)])
    assert s.count() == 5
    hits = s.search(x[2:3], RAW, 3)[0]
    assert hits[0][0] == "d2" and hits[0][1] == pytest.approx(1.0, abs=1e-5) and hits[0][2]["i"] == 2
    ids, mats = next(s.iter_vectors((RAW,)))
    np.testing.assert_allclose(mats[RAW][ids.index("d3")], x[3], atol=1e-6)
    s.close()


def test_persistent_reopen(tmp_path):
    loc = str(tmp_path / "q")
    s = QdrantStore(loc, collection="c")
    s.ensure_collection(4)
    s.upsert(["a", "b"], _vecs(2, 4), [{}, {}])
    s.close()
    s2 = QdrantStore(loc, collection="c")
    assert s2.dim == 4 and s2.count() == 2
    with pytest.raises(StoreError, match="4-d"):
        s2.ensure_collection(8)
    s2.close()


def test_upsert_same_id_replaces():
    s = QdrantStore(":memory:", collection="c")
    s.ensure_collection(4)
    x = _vecs(2, 4)
    s.upsert(["a"], x[:1], [{"v": 1}])
    s.upsert(["a"], x[1:], [{"v": 2}])
    assert s.count() == 1
    assert s.search(x[1:], RAW, 1)[0][0][2]["v"] == 2


def test_served_slot_independent_of_raw():
    s = QdrantStore(":memory:", collection="c")
    s.ensure_collection(4)
    x = _vecs(3, 4)
    s.upsert(["a", "b", "c"], x, [{}] * 3)
    s.set_served(["a", "b", "c"], SLOTS[0], x[::-1].copy())
    assert s.search(x[:1], SLOTS[0], 1)[0][0][0] == "c"
    assert s.search(x[:1], RAW, 1)[0][0][0] == "a"


def test_unreachable_server():
    with pytest.raises(StoreError, match="cannot open"):
        QdrantStore(url="http://127.0.0.1:9", timeout_s=1)


def test_cluster_create_options_reach_create_collection():
    from antigravity.stores.qdrant import QdrantStore

    store = QdrantStore(":memory:", create_options={"shard_number": 3, "replication_factor": 2, "write_consistency_factor": None})
    seen = {}
    orig = store.client.create_collection

    def spy(name, **kw):
        seen.update(kw)
        return orig(name, **kw)

    store.client.create_collection = spy
    store.ensure_collection(8)
    assert seen["shard_number"] == 3 and seen["replication_factor"] == 2 and "write_consistency_factor" not in seen
    store.close()
