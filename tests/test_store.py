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


# -- the collection manifest: a damaged field is refused, never read with a default ----------
def _manifest(tmp_path, edit=None):
    import json

    from antigravity.stores.manifest import CollectionManifest

    m = CollectionManifest(tmp_path)
    student = {"name": "student-a", "revision": "ab" * 32, "dim": 32, "max_seq_length": "default", "dtype": "fp32", "normalized": True}
    data = m.create("antigravity", str(tmp_path / "qdrant"), student, 30, backend="edge")
    if edit is not None:
        edit(data)
        m.path.write_text(json.dumps(data))
    return m


def _pop(*path):
    def edit(d):
        for p in path[:-1]:
            d = d[p]
        d.pop(path[-1])

    return edit


def _set(*path_value):
    *path, value = path_value

    def edit(d):
        for p in path[:-1]:
            d = d[p]
        d[path[-1]] = value

    return edit


DAMAGED_MANIFESTS = [  # (case, edit, the field and value as the message names them)
    ("documents-missing", _pop("documents"), "'documents' is missing"),
    ("documents-true", _set("documents", True), "'documents' is true"),
    ("documents-false", _set("documents", False), "'documents' is false"),
    ("documents-negative", _set("documents", -5), "'documents' is -5"),
    ("documents-string", _set("documents", "30"), "'documents' is \"30\""),
    ("documents-float", _set("documents", 30.5), "'documents' is 30.5"),
    ("documents-null", _set("documents", None), "'documents' is null"),
    ("collection-missing", _pop("collection"), "'collection' is missing"),
    ("store-not-a-string", _set("store", 7), "'store' is 7"),
    ("created-at-missing", _pop("created_at"), "'created_at' is missing"),
    ("student-dim-missing", _pop("student", "dim"), "'student.dim' is missing"),
    ("student-dim-string", _set("student", "dim", "32"), "'student.dim' is \"32\""),
    ("student-name-missing", _pop("student", "name"), "'student.name' is missing"),
    ("student-revision-number", _set("student", "revision", 12), "'student.revision' is 12"),
    ("student-normalized-string", _set("student", "normalized", "yes"), "'student.normalized' is \"yes\""),
    ("backend-unknown", _set("backend", "sqlite"), "'backend' is \"sqlite\""),
]


@pytest.mark.parametrize("case,edit,named", DAMAGED_MANIFESTS, ids=[c[0] for c in DAMAGED_MANIFESTS])
def test_damaged_manifest_field_is_refused(tmp_path, case, edit, named):
    """``documents`` missing / true / negative used to read as a lower bound of 0 (or 1), which
    disabled the truncation check: a store that lost documents opened as healthy."""
    from antigravity.core.errors import ManifestError

    m = _manifest(tmp_path, edit)
    before = m.path.read_bytes()
    with pytest.raises(ManifestError) as info:
        m.read()
    msg = str(info.value)
    assert f"field {named}" in msg and str(m.path) in msg and "damaged" in msg and "--reindex" in msg and "\n" not in msg, msg
    assert m.path.read_bytes() == before  # nothing rewritten


@pytest.mark.parametrize(
    "case,edit",
    [("intact", None), ("no-backend", _pop("backend")), ("backend-null", _set("backend", None)), ("documents-zero", _set("documents", 0)),
     ("revision-null", _set("student", "revision", None)), ("max-seq-length-int", _set("student", "max_seq_length", 128))],
    ids=lambda v: v if isinstance(v, str) else "",
)  # fmt: skip
def test_valid_manifests_still_read(tmp_path, case, edit):
    """Manifests written before backends existed (no ``backend``, same format version 1) and
    every value this project writes stay readable."""
    data = _manifest(tmp_path, edit).read()
    assert data["documents"] == (0 if case == "documents-zero" else 30) and data["student"]["dim"] == 32
