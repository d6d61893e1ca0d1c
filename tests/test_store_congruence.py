"""Every store backend gives the same answers (the qdrant-client habit of congruence tests).

One fixture corpus — 300 documents, random unit 32-d vectors (fixed seed), exact duplicate
vectors (ties), empty documents that share one vector (as the student embeds ``""``), payloads
with a keyword, an integer, a float, a keyword list and a nested field — is loaded into every
backend available:

* ``QdrantStore(":memory:")`` — the reference;
* ``QdrantStore(<folder>)``, ``EdgeStore(":memory:")``, ``EdgeStore(<folder>)``, ``EdgeStore(<folder>, on_disk=True)``;
* ``QdrantStore(url=$QDRANT_URL)`` only when ``QDRANT_URL`` is set.

Each backend must agree with the reference on: upsert and replace, ``set_served``, search ids,
order and scores (to 1e-5; ties by doc id), every filter form, delete, count, count_empty,
scroll (``iter_payloads`` / ``iter_vectors``), retrieve with and without vectors, payload
indexes, and — for the persistent ones — the same answers after close and reopen. The
reference itself is checked against a numpy brute force. Refused calls (bad filters, bad
index schema, bad slot) raise the same error type everywhere and change nothing stored.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any, Callable

import numpy as np
import pytest
from qdrant_client import models

from antigravity.core.errors import AntigravityError, DocumentError, QueryError, StoreError
from antigravity.stores import RAW, SLOTS, EdgeStore, QdrantStore, VectorStore, parse_filter
from antigravity.stores.shared import point_id

try:
    import qdrant_edge  # noqa: F401

    HAVE_EDGE = True
except ImportError:  # pragma: no cover - the edge backends are skipped
    HAVE_EDGE = False

N, D, SEED = 300, 32, 1234
EMPTY = {"_ag_empty": True}
LANGS = ("en", "de", "fr")
TAGS = ("red", "green", "blue")
DUP_GROUP = list(range(40, 46))  # six documents with one raw vector (doc-044 is empty)
EMPTY_IDS = sorted({i for i in range(N) if i % 25 == 4} | {DUP_GROUP[4]})  # 13 empty documents


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _corpus() -> dict[str, Any]:
    rng = np.random.default_rng(SEED)
    raw = _unit(rng.standard_normal((N, D)))
    empty_vec = _unit(rng.standard_normal(D))
    raw[EMPTY_IDS] = empty_vec  # the student embeds every empty text alike
    raw[DUP_GROUP] = raw[DUP_GROUP[0]]  # ... but doc-044, empty, sits in the tie group
    served_a = _unit(raw + 0.3 * rng.standard_normal((N, D)))
    served_a[DUP_GROUP[:3]] = served_a[DUP_GROUP[0]]
    served_b = _unit(rng.standard_normal((N, D)))
    ids = [f"doc-{i:03d}" for i in range(N)]
    payloads = []
    for i in range(N):
        p = {
            "lang": LANGS[i % 3], "year": 1990 + i % 31, "score": round(float(rng.uniform(0, 10)), 3),
            "tags": [TAGS[i % 3], TAGS[(i // 3) % 3]], "meta": {"src": "web" if i % 2 else "pdf"}, "title": f"T{i}",
        }  # fmt: skip
        payloads.append({**p, **EMPTY} if i in EMPTY_IDS else p)
    queries = np.concatenate([_unit(rng.standard_normal((12, D))), raw[[0, 17, DUP_GROUP[0]]], empty_vec[None, :]])
    return {"ids": ids, "raw": raw, "served_a": served_a, "served_b": served_b, "payloads": payloads, "queries": queries, "empty_vec": empty_vec}


CORPUS = _corpus()


def load(store: VectorStore) -> VectorStore:
    """Write the corpus the way the engine does: upsert in two batches with slot A, then
    ``set_served`` slot B for two thirds of the documents, then replace three documents."""
    c = CORPUS
    store.ensure_collection(D)
    for lo, hi in ((0, 180), (180, N)):
        store.n_empty += sum(1 for p in c["payloads"][lo:hi] if p.get("_ag_empty"))  # as the engine does
        store.upsert(c["ids"][lo:hi], c["raw"][lo:hi], c["payloads"][lo:hi], {SLOTS[0]: c["served_a"][lo:hi]})
    some = [i for i in range(N) if i % 3]
    store.set_served([c["ids"][i] for i in some], SLOTS[1], c["served_b"][some])
    # replace: a new vector and payload (and no served slots) for doc-000; doc-004 stops being empty
    rng = np.random.default_rng(SEED + 1)
    new = _unit(rng.standard_normal((2, D)))
    store.upsert(["doc-000", "doc-004"], new, [{"lang": "xx", "year": 2050, "score": 0.5}, {"lang": "en", "year": 1999, "score": 1.25}])
    store.n_empty = store.count_empty()
    return store


def expected_raw() -> tuple[np.ndarray, list[dict]]:
    """The raw vectors and payloads after :func:`load` (for the numpy brute force)."""
    raw, payloads = CORPUS["raw"].copy(), [dict(p) for p in CORPUS["payloads"]]
    rng = np.random.default_rng(SEED + 1)
    raw[[0, 4]] = _unit(rng.standard_normal((2, D)))
    payloads[0], payloads[4] = {"lang": "xx", "year": 2050, "score": 0.5}, {"lang": "en", "year": 1999, "score": 1.25}
    return raw, payloads


# -- backends -----------------------------------------------------------------------------
Factory = Callable[[Any], VectorStore]  # (tmp_path) -> a fresh store; call again to reopen


def _qdrant_folder(tmp: Any, **kw: Any) -> VectorStore:
    return QdrantStore(str(tmp / "qdrant"), collection="c", **kw)


def _edge_folder(tmp: Any, **kw: Any) -> VectorStore:
    return EdgeStore(str(tmp / "edge"), collection="c", **kw)


_SERVER_COLLECTION = f"ag_congruence_{uuid.uuid4().hex[:8]}"


def _server(tmp: Any, **kw: Any) -> VectorStore:
    return QdrantStore(url=os.environ["QDRANT_URL"], api_key=os.environ.get("QDRANT_API_KEY"), collection=f"{_SERVER_COLLECTION}_{tmp.name}"[:60], **kw)


BACKENDS: dict[str, tuple[Factory, bool]] = {  # name -> (factory, persistent)
    "qdrant-folder": (_qdrant_folder, True),
}
if HAVE_EDGE:
    BACKENDS["edge-memory"] = (lambda tmp, **kw: EdgeStore(":memory:", collection="c", **kw), False)
    BACKENDS["edge-folder"] = (_edge_folder, True)
    BACKENDS["edge-folder-on-disk"] = (lambda tmp, **kw: EdgeStore(str(tmp / "edge"), collection="c", on_disk=True, **kw), True)  # store.on_disk
if os.environ.get("QDRANT_URL"):
    BACKENDS["qdrant-server"] = (_server, True)


@pytest.fixture
def opened(tmp_path):
    """Stores opened by a test; closed (and server collections dropped) afterwards."""
    stores: list[VectorStore] = []
    yield stores
    for s in stores:
        try:
            if s.remote:
                s.drop_collection()
        finally:
            s.close()


def _open(opened: list, name: str, tmp: Any, **kw: Any) -> VectorStore:
    store = BACKENDS[name][0](tmp, **kw)
    opened.append(store)
    return store


@pytest.fixture(scope="module")
def reference():
    store = load(QdrantStore(":memory:", collection="c"))
    yield store
    store.close()


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def loaded(request, tmp_path_factory):
    """A loaded backend shared by the read-only tests of this module."""
    name = request.param
    tmp = tmp_path_factory.mktemp(name)
    store = load(BACKENDS[name][0](tmp))
    yield name, store
    if store.remote:
        store.drop_collection()
    store.close()


# -- comparison helpers ---------------------------------------------------------------------
def snapshot(store: VectorStore) -> tuple:
    """Everything stored: counts, ``{id: payload}`` and ``{id: {name: vector}}`` (by scrolling)."""
    payloads = dict(store.iter_payloads(batch_size=64))
    vectors: dict[str, dict[str, np.ndarray]] = {}
    for ids, mats in store.iter_vectors((RAW, *SLOTS), batch_size=64):
        for j, did in enumerate(ids):
            vectors[did] = {n: mats[n][j] for n in mats}
    return store.count(), store.count_empty(), store.n_empty, payloads, vectors


def assert_same_snapshot(got: tuple, want: tuple, where: str) -> None:
    assert got[:4] == want[:4], where
    assert got[4].keys() == want[4].keys(), where
    for did, vecs in want[4].items():
        for n, v in vecs.items():
            np.testing.assert_allclose(got[4][did][n], v, atol=1e-6, err_msg=f"{where}: {did} {n}")


def assert_same_hits(got: list, want: list, where: str) -> None:
    assert len(got) == len(want), where
    for qi, (g, w) in enumerate(zip(got, want)):
        assert [h[0] for h in g] == [h[0] for h in w], f"{where}, query {qi}"
        np.testing.assert_allclose([h[1] for h in g], [h[1] for h in w], atol=1e-5, err_msg=f"{where}, query {qi}")
        assert [h[2] for h in g] == [h[2] for h in w], f"{where}, query {qi}"


def assert_same_retrieve(got: dict, want: dict, where: str) -> None:
    assert got.keys() == want.keys(), where
    for did, w in want.items():
        assert got[did]["payload"] == w["payload"], f"{where}: {did}"
        assert got[did]["vectors"].keys() == w["vectors"].keys(), f"{where}: {did}"
        for n, v in w["vectors"].items():
            assert got[did]["vectors"][n].dtype == np.float32 and got[did]["vectors"][n].shape == (D,)
            np.testing.assert_allclose(got[did]["vectors"][n], v, atol=1e-6, err_msg=f"{where}: {did} {n}")


DICT_FILTERS = [
    {"lang": "en"},
    {"lang": ["de", "fr"]},
    {"year": {"gte": 2000, "lt": 2010}},
    {"score": {"gt": 2.5, "lte": 7.5}, "lang": "fr"},
    {"tags": "red"},
    {"tags": ["green", "blue"], "year": {"lte": 1995}},
    {"meta.src": "pdf"},
    {"doc_id": ["doc-001", "doc-002", "doc-040", "doc-044", "doc-299"]},
    {"lang": "nope"},
    {},
]
MODEL_FILTERS = [
    models.Filter(should=[models.FieldCondition(key="lang", match=models.MatchValue(value="en")),
                          models.FieldCondition(key="year", range=models.Range(gte=2015))]),
    models.Filter(must_not=[models.FieldCondition(key="lang", match=models.MatchAny(any=["en", "de"]))]),
    models.Filter(must=[models.FieldCondition(key="score", range=models.Range(lt=5.0)),
                        models.Filter(should=[models.FieldCondition(key="tags", match=models.MatchValue(value="blue")),
                                              models.FieldCondition(key="year", match=models.MatchValue(value=2001))])],
                  must_not=[models.FieldCondition(key="meta.src", match=models.MatchValue(value="web"))]),
]  # fmt: skip


def _truth(payload: dict, flt: dict) -> bool:
    """The dict filter evaluated in Python (for the reference check)."""
    for key, cond in flt.items():
        value: Any = payload
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        values = value if isinstance(value, list) else [value]
        if isinstance(cond, dict):
            ops = {"gte": lambda a, b: a >= b, "gt": lambda a, b: a > b, "lte": lambda a, b: a <= b, "lt": lambda a, b: a < b}
            ok = any(v is not None and all(ops[o](v, b) for o, b in cond.items()) for v in values)
        else:
            ok = any(v in (cond if isinstance(cond, list) else [cond]) for v in values)
        if not ok:
            return False
    return True


def brute_force(vectors: np.ndarray, k: int, flt: dict | None = None) -> list[list[tuple[str, float]]]:
    raw, payloads = expected_raw()
    ids = CORPUS["ids"]
    keep = [i for i in range(N) if not payloads[i].get("_ag_empty") and _truth({**payloads[i], "doc_id": ids[i]}, flt or {})]
    sims = _unit(vectors) @ raw[keep].T
    out = []
    for row in sims:
        order = sorted(range(len(keep)), key=lambda j: (-round(float(row[j]), 6), ids[keep[j]]))[:k]
        out.append([(ids[keep[j]], float(row[j])) for j in order])
    return out


# -- the reference is right -----------------------------------------------------------------
@pytest.mark.parametrize("flt", [None, *DICT_FILTERS], ids=lambda f: repr(f))
def test_reference_equals_numpy_brute_force(reference, flt):
    got = reference.search(CORPUS["queries"], RAW, 10, filter=flt)
    want = brute_force(CORPUS["queries"], 10, flt)
    for g, w in zip(got, want):
        assert [h[0] for h in g] == [h[0] for h in w]
        np.testing.assert_allclose([h[1] for h in g], [h[1] for h in w], atol=1e-5)


def test_reference_orders_ties_by_doc_id_and_hides_empty_documents(reference):
    dup = CORPUS["raw"][DUP_GROUP[0]][None, :]
    hits = reference.search(dup, RAW, 3)[0]
    assert [h[0] for h in hits] == ["doc-040", "doc-041", "doc-042"]  # a tie of five across the 3rd place
    assert len({h[1] for h in hits}) == 1
    all_dups = reference.search(dup, RAW, 6)[0]
    assert [h[0] for h in all_dups][:5] == ["doc-040", "doc-041", "doc-042", "doc-043", "doc-045"]  # doc-044 is empty
    near_empty = reference.search(CORPUS["empty_vec"][None, :], RAW, 5)[0]
    assert len(near_empty) == 5 and not any(h[2].get("_ag_empty") for h in near_empty)


# -- every backend agrees with the reference ------------------------------------------------
def test_backend_is_a_vector_store(loaded):
    from tests.test_store_protocol import assert_implements

    assert_implements(loaded[1], VectorStore)


def test_same_contents(loaded, reference):
    name, store = loaded
    assert store.dim == D
    assert_same_snapshot(snapshot(store), snapshot(reference), name)
    assert store.count() == N and store.count_empty() == len(EMPTY_IDS) - 1 == store.n_empty
    counts = [store.count_vectors(v) for v in (RAW, *SLOTS)]  # slot B was set for two thirds only
    assert counts == [reference.count_vectors(v) for v in (RAW, *SLOTS)] and counts[0] == N and counts[2] < N, (name, counts)


@pytest.mark.parametrize("using", [RAW, *SLOTS])
@pytest.mark.parametrize("k", [1, 3, 10, 40])
def test_same_search(loaded, reference, using, k):
    name, store = loaded
    assert_same_hits(store.search(CORPUS["queries"], using, k), reference.search(CORPUS["queries"], using, k), f"{name} {using} k={k}")


def test_same_single_and_empty_query_batches(loaded, reference):
    name, store = loaded
    q = CORPUS["queries"]
    assert_same_hits(store.search(q[:1], SLOTS[0], 5), reference.search(q[:1], SLOTS[0], 5), name)
    assert store.search(q[:0], RAW, 5) == [] and store.search(q[:2], RAW, 0) == [[], []]


def test_ties_are_ordered_by_doc_id(loaded):
    name, store = loaded
    dup = CORPUS["raw"][DUP_GROUP[0]][None, :]
    for k in range(1, 6):
        hits = store.search(dup, RAW, k)[0]
        assert [h[0] for h in hits] == ["doc-040", "doc-041", "doc-042", "doc-043", "doc-045"][:k], f"{name} k={k}"
    slot_dup = CORPUS["served_a"][DUP_GROUP[0]][None, :]
    assert [h[0] for h in store.search(slot_dup, SLOTS[0], 2)[0]] == ["doc-040", "doc-041"], name


def test_empty_documents_hidden_even_when_n_empty_is_stale(loaded, reference):
    name, store = loaded
    q = CORPUS["empty_vec"][None, :]
    want = reference.search(q, RAW, 5)
    saved = store.n_empty
    try:
        store.n_empty = 0  # searches must fetch more by themselves
        assert_same_hits(store.search(q, RAW, 5), want, name)
    finally:
        store.n_empty = saved


@pytest.mark.parametrize("flt", DICT_FILTERS + MODEL_FILTERS, ids=lambda f: repr(f)[:60])
def test_same_filtered_search(loaded, reference, flt):
    name, store = loaded
    for using in (RAW, SLOTS[1]):
        assert_same_hits(store.search(CORPUS["queries"], using, 10, filter=flt), reference.search(CORPUS["queries"], using, 10, filter=flt), f"{name} {flt}")


def test_dict_and_model_forms_agree(loaded):
    name, store = loaded
    dict_form = {"lang": ["de", "fr"], "year": {"gte": 2000}}
    model = parse_filter(dict_form)
    assert isinstance(model, models.Filter)
    assert_same_hits(store.search(CORPUS["queries"], RAW, 10, filter=model), store.search(CORPUS["queries"], RAW, 10, filter=dict_form), name)


def test_same_retrieve(loaded, reference):
    name, store = loaded
    ids = ["doc-000", "doc-001", "doc-002", "doc-004", "doc-029", "doc-044", "missing"]
    assert store.retrieve(ids) == reference.retrieve(ids) and "missing" not in store.retrieve(ids)
    assert_same_retrieve(store.retrieve(ids, with_vectors=True), reference.retrieve(ids, with_vectors=True), name)
    assert_same_retrieve(store.retrieve(ids, with_vectors=[RAW]), reference.retrieve(ids, with_vectors=[RAW]), name)
    got = store.retrieve(["doc-000", "doc-002", "doc-003"], with_vectors=True)
    assert set(got["doc-000"]["vectors"]) == {RAW}  # replaced without served slots
    assert set(got["doc-002"]["vectors"]) == {RAW, *SLOTS} and set(got["doc-003"]["vectors"]) == {RAW, SLOTS[0]}
    assert store.retrieve([]) == {}
    with pytest.raises(TypeError):
        store.retrieve("doc-001")  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="unknown vector name"):
        store.retrieve(["doc-001"], with_vectors=["nope"])


def test_scroll_in_small_batches(loaded, reference):
    name, store = loaded
    ids = [i for i, _ in store.iter_payloads(batch_size=7)]
    assert len(ids) == len(set(ids)) == N
    batches = list(store.iter_vectors((SLOTS[1],), batch_size=50))
    assert all(m[SLOTS[1]].shape == (len(b), D) and m[SLOTS[1]].dtype == np.float32 for b, m in batches)
    missing = {d for b, m in batches for d, row in zip(b, m[SLOTS[1]]) if not row.any()}
    assert missing == {CORPUS["ids"][i] for i in range(N) if i % 3 == 0} | {"doc-004"}  # a slot never written is a zero row


# -- writes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_same_after_delete_and_rewrites(name, tmp_path, opened):
    ref = load(QdrantStore(":memory:", collection="c"))
    opened.append(ref)
    store = load(_open(opened, name, tmp_path))
    gone = ["doc-001", "doc-029", "doc-054", "doc-041", "no-such-doc"]  # 029 and 054 are empty
    for s in (ref, store):
        s.delete(gone)
        s.delete([])
        assert s.count() == N - 4 and s.count_empty() == s.n_empty == len(EMPTY_IDS) - 3
        assert s.retrieve(gone) == {}
        s.set_served(["doc-002", "doc-003"], SLOTS[1], CORPUS["served_b"][[10, 11]])
        s.upsert(["doc-001"], CORPUS["raw"][[1]], [{"lang": "back"}])  # a deleted id comes back
        with pytest.raises(TypeError):
            s.delete("doc-002")  # type: ignore[arg-type]
    assert_same_snapshot(snapshot(store), snapshot(ref), name)
    for using in (RAW, *SLOTS):
        assert_same_hits(store.search(CORPUS["queries"], using, 10), ref.search(CORPUS["queries"], using, 10), f"{name} {using}")
    dup = CORPUS["raw"][DUP_GROUP[0]][None, :]
    assert [h[0] for h in store.search(dup, RAW, 3)[0]] == ["doc-040", "doc-042", "doc-043"]


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_same_after_clear_served(name, tmp_path, opened):
    ref = load(QdrantStore(":memory:", collection="c"))
    opened.append(ref)
    store = load(_open(opened, name, tmp_path))
    for s in (ref, store):
        s.clear_served(SLOTS[0])
        with pytest.raises(StoreError):
            s.clear_served("raw")
        s.set_served(["doc-002", "doc-003"], SLOTS[0], CORPUS["served_b"][[10, 11]])  # a cleared slot is written again
    assert_same_snapshot(snapshot(store), snapshot(ref), name)
    for using in (RAW, *SLOTS):
        assert_same_hits(store.search(CORPUS["queries"], using, 10), ref.search(CORPUS["queries"], using, 10), f"{name} {using}")
    assert {h[0] for hs in store.search(CORPUS["queries"], SLOTS[0], 10) for h in hs} == {"doc-002", "doc-003"}


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_payload_indexes_change_no_answer(name, tmp_path, opened, reference):
    store = load(_open(opened, name, tmp_path))
    for field, schema in (("lang", "keyword"), ("year", "integer"), ("score", "float"), ("tags", "keyword"), ("flag", "bool")):
        store.create_payload_index(field, schema)
    for flt in DICT_FILTERS:
        assert_same_hits(store.search(CORPUS["queries"], RAW, 10, filter=flt), reference.search(CORPUS["queries"], RAW, 10, filter=flt), f"{name} {flt}")
    store.optimize()  # a no-op or an index build: the answers stay exact on this small corpus
    assert_same_hits(store.search(CORPUS["queries"], SLOTS[0], 10), reference.search(CORPUS["queries"], SLOTS[0], 10), name)


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_refused_calls_raise_and_change_nothing(name, tmp_path, opened):
    store = load(_open(opened, name, tmp_path))
    before = snapshot(store)
    bad_filters = [
        ({"_ag_empty": True}, "_ag_empty"), ({"lang": []}, "lang"), ({"year": {"gtx": 3}}, "gtx"), ({"year": {}}, "year"),
        ({"lang": None}, "lang"), ({"lang": [["en"]]}, "lang"), ({"lang": {"en"}}, "lang"), ({"score": 0.5}, "score"),
        ({"lang": ["en", 1]}, "lang"), ({"year": {"gte": "x"}}, "x"), ({"year": {"lt": float("nan")}}, "year"), ({1: "x"}, "1"),
        ("lang=en", "str"), ([("lang", "en")], "list"), ({"lang": True, "": 1}, "''"),
        (models.Filter(must=[models.FieldCondition(key="_ag_empty", match=models.MatchValue(value=True))]), "_ag_empty"),
    ]  # fmt: skip
    for flt, named in bad_filters:
        with pytest.raises(QueryError, match=named.replace("[", r"\[")) as info:
            store.search(CORPUS["queries"], RAW, 5, filter=flt)
        assert "\n" not in str(info.value)
    for field, schema, named in (("lang", "text", "text"), ("_ag_empty", "bool", "_ag_empty"), ("", "keyword", "''")):
        with pytest.raises(QueryError, match=named):
            store.create_payload_index(field, schema)
    with pytest.raises(StoreError, match="unknown slot"):
        store.set_served(["doc-002"], "served_c", CORPUS["served_b"][:1])
    with pytest.raises(StoreError, match="4-d"):
        store.ensure_collection(4)
    assert_same_snapshot(snapshot(store), before, name)


# -- bad input at the store level: typed, named, nothing stored changes (every backend) ---------
REFUSING = {**{n: f for n, (f, _) in BACKENDS.items()}, "qdrant-memory": lambda tmp, **kw: QdrantStore(":memory:", collection="c", **kw)}
SMALL = 20


def load_small(store: VectorStore) -> VectorStore:
    """20 documents of the corpus with slot A, and slot B for half of them (cheap to build per test)."""
    c = CORPUS
    store.ensure_collection(D)
    store.upsert(c["ids"][:SMALL], c["raw"][:SMALL], [{"i": i} for i in range(SMALL)], {SLOTS[0]: c["served_a"][:SMALL]})
    store.set_served(c["ids"][:SMALL:2], SLOTS[1], c["served_b"][:SMALL:2])
    return store


def _state(store: VectorStore) -> tuple:
    """Everything stored plus the answers of a search on every vector name."""
    hits = [[(h[0], round(h[1], 5)) for h in hs] for u in (RAW, *SLOTS) for hs in store.search(CORPUS["queries"][:4], u, 5)]
    return snapshot(store), hits


def _assert_unchanged(store: VectorStore, before: tuple, where: str) -> None:
    after = _state(store)
    assert_same_snapshot(after[0], before[0], where)
    assert after[1] == before[1], where


def _refused(store: VectorStore, call: Callable, error: type, named: str) -> str:
    """``call(store)`` raises exactly ``error`` (a typed AntigravityError), on one line, naming ``named``."""
    with pytest.raises(AntigravityError) as info:
        call(store)
    msg = str(info.value)
    assert type(info.value) is error, f"{type(info.value).__name__}: {msg}"
    assert named in msg and "\n" not in msg, msg
    return msg


def _rows(fill: float, n: int = 1) -> np.ndarray:
    return np.full((n, D), fill, dtype=np.float32)


def _one_bad(fill: float = float("nan")) -> np.ndarray:
    """Two rows, the second non-finite in one coordinate."""
    m = CORPUS["raw"][[50, 51]].copy()
    m[1, 3] = fill
    return m


NAN, INF = float("nan"), float("inf")
NON_FINITE_WRITES = [  # (case, call, the id the message names)
    ("upsert-raw-nan-new-id", lambda s: s.upsert(["bad"], _rows(NAN), [{}]), "'bad'"),
    ("upsert-raw-inf", lambda s: s.upsert(["bad"], _rows(INF), [{}]), "'bad'"),
    ("upsert-raw-minus-inf", lambda s: s.upsert(["bad"], _rows(-INF), [{}]), "'bad'"),
    ("upsert-raw-float64-overflow", lambda s: s.upsert(["bad"], np.full((1, D), 1e39), [{}]), "'bad'"),  # inf once float32
    ("upsert-raw-nan-replacing-stored-doc", lambda s: s.upsert(["doc-003"], _rows(NAN), [{"i": -1}]), "'doc-003'"),
    ("upsert-one-nan-row-among-good", lambda s: s.upsert(["good", "bad"], _one_bad(), [{}, {}]), "['bad']"),
    ("upsert-served-nan", lambda s: s.upsert(["bad"], CORPUS["raw"][[60]], [{}], {SLOTS[0]: _rows(NAN)}), "'bad'"),
    ("set-served-nan", lambda s: s.set_served(["doc-002"], SLOTS[1], _rows(NAN)), "'doc-002'"),
    ("set-served-one-inf-row", lambda s: s.set_served(["doc-001", "doc-005"], SLOTS[1], _one_bad(INF)), "['doc-005']"),
]


@pytest.mark.parametrize("case,call,named", NON_FINITE_WRITES, ids=[c[0] for c in NON_FINITE_WRITES])
@pytest.mark.parametrize("name", sorted(REFUSING))
def test_non_finite_vectors_are_refused_and_nothing_is_written(name, case, call, named, tmp_path, opened):
    """A NaN/inf vector would be counted but never found (Edge stored it, qdrant-client raised a
    raw ValueError): every backend refuses it with a DocumentError naming the document."""
    store = load_small(REFUSING[name](tmp_path))
    opened.append(store)
    before = _state(store)
    msg = _refused(store, call, DocumentError, named)
    assert "NaN or inf" in msg and "nothing was written" in msg
    _assert_unchanged(store, before, f"{name} {case}")
    assert store.count() == SMALL and store.retrieve(["bad", "good"]) == {}


BAD_SEARCHES = [  # (case, call, error, what the message names)
    ("nan-query", lambda s: s.search(_rows(NAN), RAW, 3), QueryError, "row(s) [0]"),
    ("inf-query", lambda s: s.search(_rows(INF), SLOTS[0], 3), QueryError, "row(s) [0]"),
    ("nan-in-second-query-row", lambda s: s.search(_one_bad(), RAW, 3), QueryError, "row(s) [1]"),
    ("float64-overflow-query", lambda s: s.search(np.full((1, D), -1e39), RAW, 3), QueryError, "row(s) [0]"),
    ("k-negative", lambda s: s.search(CORPUS["queries"][:1], RAW, -3), QueryError, "got -3"),
    ("k-fraction", lambda s: s.search(CORPUS["queries"][:1], RAW, 2.9), QueryError, "got 2.9"),
    ("k-whole-float", lambda s: s.search(CORPUS["queries"][:1], RAW, 3.0), QueryError, "got 3.0"),
    ("k-bool", lambda s: s.search(CORPUS["queries"][:1], RAW, True), QueryError, "got True"),
    ("k-string", lambda s: s.search(CORPUS["queries"][:1], RAW, "3"), QueryError, "got '3'"),
    ("k-none", lambda s: s.search(CORPUS["queries"][:1], RAW, None), QueryError, "got None"),
]


@pytest.mark.parametrize("case,call,error,named", BAD_SEARCHES, ids=[c[0] for c in BAD_SEARCHES])
@pytest.mark.parametrize("name", sorted(REFUSING))
def test_bad_search_arguments_are_refused(name, case, call, error, named, tmp_path, opened):
    """A NaN query returned [] on Edge, k=-3 [[]], k=2.9 two hits: every backend refuses them
    (QueryError naming the row or k), with or without a collection."""
    empty = REFUSING[name](tmp_path / "empty")
    opened.append(empty)
    _refused(empty, call, error, named)  # checked before "no collection: no hits"
    assert empty.dim is None and empty.count() == 0
    store = load_small(REFUSING[name](tmp_path))
    opened.append(store)
    before = _state(store)
    _refused(store, call, error, named)
    _assert_unchanged(store, before, f"{name} {case}")


@pytest.mark.parametrize("name", sorted(REFUSING))
def test_integer_k_of_any_integer_type_is_accepted(name, tmp_path, opened):
    store = load_small(_open_refusing(opened, name, tmp_path))
    q = CORPUS["queries"][:2]
    want = store.search(q, RAW, 2)
    assert [len(h) for h in want] == [2, 2]
    assert store.search(q, RAW, np.int64(2)) == want and store.search(q, RAW, 0) == [[], []]


def _open_refusing(opened: list, name: str, tmp: Any) -> VectorStore:
    store = REFUSING[name](tmp)
    opened.append(store)
    return store


TYPED_REFUSALS = [  # (case, call, error, what the message names) — qdrant-client raised KeyError / ValueError / IndexError / pydantic errors
    ("set-served-unknown-id", lambda s: s.set_served(["doc-002", "ghost"], SLOTS[1], CORPUS["served_b"][:2]), StoreError, "['ghost']"),
    ("set-served-only-unknown-ids", lambda s: s.set_served(["ghost", "phantom"], SLOTS[0], CORPUS["served_b"][:2]), StoreError, "['ghost', 'phantom']"),
    ("set-served-wrong-dim", lambda s: s.set_served(["doc-002"], SLOTS[1], np.ones((1, 4), np.float32)), StoreError, "(1, 4)"),
    ("set-served-row-count", lambda s: s.set_served(["doc-002", "doc-003"], SLOTS[1], CORPUS["served_b"][:1]), StoreError, f"needs (2, {D})"),
    ("upsert-wrong-dim", lambda s: s.upsert(["w"], np.ones((1, 4), np.float32), [{}]), StoreError, "(1, 4)"),
    ("upsert-served-wrong-dim", lambda s: s.upsert(["w"], CORPUS["raw"][[60]], [{}], {SLOTS[0]: np.ones((1, 4), np.float32)}), StoreError, "(1, 4)"),
    ("upsert-payload-not-json", lambda s: s.upsert(["a", "w"], CORPUS["raw"][[60, 61]], [{}, {"o": object()}]), StoreError, "document 'w'"),
    ("upsert-payload-nan", lambda s: s.upsert(["w"], CORPUS["raw"][[60]], [{"x": float("nan")}]), StoreError, "document 'w'"),
    ("upsert-payload-not-dict", lambda s: s.upsert(["w"], CORPUS["raw"][[60]], ["text"]), StoreError, "document 'w'"),
    ("search-wrong-dim", lambda s: s.search(np.ones((1, 4), np.float32), RAW, 3), StoreError, "(1, 4)"),
    ("search-one-dimensional", lambda s: s.search(CORPUS["queries"][0], RAW, 3), StoreError, f"({D},)"),
    ("search-unknown-vector-name", lambda s: s.search(CORPUS["queries"][:1], "nope", 3), StoreError, "'nope'"),
    ("ensure-collection-other-dim", lambda s: s.ensure_collection(4), StoreError, "4-d"),
]


@pytest.mark.parametrize("case,call,error,named", TYPED_REFUSALS, ids=[c[0] for c in TYPED_REFUSALS])
@pytest.mark.parametrize("name", sorted(REFUSING))
def test_refusals_are_typed_and_name_the_callers_value(name, case, call, error, named, tmp_path, opened):
    store = load_small(_open_refusing(opened, name, tmp_path))
    before = _state(store)
    msg = _refused(store, call, error, named)
    for did in ("ghost", "phantom", "w", "doc-002"):
        assert point_id(did) not in msg  # the caller's id, never the internal uuid
    _assert_unchanged(store, before, f"{name} {case}")
    assert store.retrieve(["ghost", "phantom", "w", "a"]) == {}


NO_COLLECTION = [  # (case, call, what the message names)
    ("upsert", lambda s: s.upsert(["a"], CORPUS["raw"][:1], [{}]), "upsert: collection 'c' does not exist"),
    ("set-served", lambda s: s.set_served(["a"], SLOTS[0], CORPUS["raw"][:1]), "set_served: collection 'c' does not exist"),
    ("ensure-collection-float-dim", lambda s: s.ensure_collection(2.5), "got 2.5"),
    ("ensure-collection-bool-dim", lambda s: s.ensure_collection(True), "got True"),
    ("ensure-collection-zero-dim", lambda s: s.ensure_collection(0), "got 0"),
    ("ensure-collection-string-dim", lambda s: s.ensure_collection("32"), "got '32'"),
]


@pytest.mark.parametrize("case,call,named", NO_COLLECTION, ids=[c[0] for c in NO_COLLECTION])
@pytest.mark.parametrize("name", sorted(REFUSING))
def test_refusals_without_a_collection_create_nothing(name, case, call, named, tmp_path, opened):
    """qdrant-client raised ValueError('Collection not found'); a float dim made a 2-d collection."""
    store = _open_refusing(opened, name, tmp_path)
    _refused(store, call, StoreError, named)
    assert store.dim is None and store.count() == 0 and store.search(CORPUS["queries"][:1], RAW, 3) == [[]]


# -- persistence ----------------------------------------------------------------------------
PERSISTENT = sorted(n for n, (_, p) in BACKENDS.items() if p)


@pytest.mark.parametrize("name", PERSISTENT)
def test_same_answers_after_reopen(name, tmp_path, opened, reference):
    store = load(_open(opened, name, tmp_path))
    store.delete(["doc-002"])
    before = snapshot(store)
    hits = {u: store.search(CORPUS["queries"], u, 10, filter={"lang": ["en", "fr"]}) for u in (RAW, *SLOTS)}
    store.close()
    if store.remote:
        opened.remove(store)
    again = _open(opened, name, tmp_path)
    assert again.dim == D and again.n_empty == store.n_empty
    assert_same_snapshot(snapshot(again), before, name)
    for u, want in hits.items():
        assert_same_hits(again.search(CORPUS["queries"], u, 10, filter={"lang": ["en", "fr"]}), want, f"{name} reopened {u}")


@pytest.mark.parametrize("name", [n for n in PERSISTENT if n != "qdrant-server"])
def test_folder_rules_agree(name, tmp_path, opened):
    with pytest.raises(StoreError, match="no store at .*nothing was created"):
        BACKENDS[name][0](tmp_path / "missing", create=False)
    assert not (tmp_path / "missing").exists()
    (tmp_path / name.split("-")[0]).mkdir()  # the store folder exists, the collection does not
    store = _open(opened, name, tmp_path, create=False)
    assert store.dim is None and store.count() == 0 and store.search(CORPUS["queries"][:2], RAW, 3) == [[], []]
    assert store.retrieve(["x"]) == {} and list(store.iter_payloads()) == [] and store.indexed_vectors_count() == 0
    load(store)
    with pytest.raises(StoreError, match="cannot open"):
        BACKENDS[name][0](tmp_path)  # one open store per folder
    store.drop_collection()
    assert store.dim is None and store.count() == 0 and store.n_empty == 0


# -- EdgeStore only ---------------------------------------------------------------------------
edge_only = pytest.mark.skipif(not HAVE_EDGE, reason="qdrant-edge-py is not installed")


@edge_only
def test_edge_hnsw_after_optimize_matches_exact(tmp_path):
    """After ``optimize()`` the slots are searched through HNSW; on this corpus top-10 equals
    exact search. Points written afterwards are searched exactly and found."""
    ref = load(QdrantStore(":memory:", collection="c"))
    store = load(EdgeStore(str(tmp_path / "e"), collection="c", indexing_threshold=1, full_scan_threshold=1))
    try:
        assert store.indexed_vectors_count() == 0
        store.optimize()
        assert store.indexed_vectors_count() >= 2 * N  # raw (no graph) and the slots are in indexed segments
        q = np.concatenate([CORPUS["queries"], _unit(np.random.default_rng(7).standard_normal((64, D)))])
        for using in (RAW, *SLOTS):
            assert_same_hits(store.search(q, using, 10), ref.search(q, using, 10), f"hnsw {using}")
            flt = {"lang": ["en", "de"]}
            assert_same_hits(store.search(q, using, 10, filter=flt), ref.search(q, using, 10, filter=flt), f"hnsw filtered {using}")
        late = _unit(np.random.default_rng(8).standard_normal((3, D)))
        for s in (store, ref):
            s.upsert(["late-0", "late-1", "late-2"], late, [{}] * 3, {SLOTS[0]: late})
        assert_same_hits(store.search(late, SLOTS[0], 10), ref.search(late, SLOTS[0], 10), "after late writes")
        assert [h[0][0] for h in store.search(late, SLOTS[0], 1)] == ["late-0", "late-1", "late-2"]
    finally:
        store.close()
        ref.close()


@edge_only
@pytest.mark.parametrize("cond", [
    models.HasIdCondition(has_id=[1]),
    models.IsEmptyCondition(is_empty=models.PayloadField(key="lang")),
    models.FieldCondition(key="title", match=models.MatchText(text="T1")),
    models.FieldCondition(key="lang", match=models.MatchExcept(**{"except": ["en"]})),
    models.FieldCondition(key="tags", values_count=models.ValuesCount(gte=1)),
], ids=["has_id", "is_empty", "match_text", "match_except", "values_count"])  # fmt: skip
def test_edge_refuses_unsupported_model_filters(cond, opened, tmp_path):
    store = load(_open(opened, "edge-memory", tmp_path))
    with pytest.raises(QueryError, match="EdgeStore does not support") as info:
        store.search(CORPUS["queries"], RAW, 5, filter=models.Filter(must=[cond]))
    assert "\n" not in str(info.value)
    with pytest.raises(QueryError, match="min_should"):
        store.search(CORPUS["queries"], RAW, 5, filter=models.Filter(min_should=models.MinShould(conditions=[cond], min_count=1)))


@edge_only
def test_edge_set_served_refuses_unknown_ids_and_writes_nothing(opened, tmp_path):
    store = load(_open(opened, "edge-memory", tmp_path))
    before = snapshot(store)
    with pytest.raises(StoreError, match="not stored.*nothing was written"):
        store.set_served(["doc-002", "ghost"], SLOTS[1], CORPUS["served_b"][:2])
    assert_same_snapshot(snapshot(store), before, "edge")


@edge_only
def test_edge_memory_folder_is_removed_on_close_and_options_apply_on_reopen(tmp_path):
    store = EdgeStore(":memory:", collection="c")
    store.ensure_collection(D)
    root = store._root
    assert root.is_dir() and store.meta_file is None and store.collection_dir is None and "in-memory" in store.describe()
    store.close()
    store.close()
    assert not root.exists()
    s = load(EdgeStore(str(tmp_path), collection="c", m=8))
    assert s.meta_file == tmp_path / "c" / "edge_config.json" and s.meta_file.is_file()
    s.close()
    s = EdgeStore(str(tmp_path), collection="c", m=32, ef_construct=64, hnsw_ef=128)
    try:
        cfg = json.loads(s.meta_file.read_text())
        assert cfg["hnsw_config"]["m"] == 32 and cfg["hnsw_config"]["ef_construct"] == 64 and cfg["vectors"][RAW]["hnsw_config"]["m"] == 0
        assert s.count() == N and s.search(CORPUS["queries"][:1], SLOTS[0], 3)[0]
    finally:
        s.close()
    with pytest.raises(StoreError, match="m must be an int"):
        EdgeStore(":memory:", m=-1)
    with pytest.raises(StoreError, match="invalid collection name"):
        EdgeStore(str(tmp_path), collection="../x")
    (tmp_path / "foreign").mkdir()
    with pytest.raises(StoreError, match="holds no Qdrant Edge shard"):
        EdgeStore(str(tmp_path), collection="foreign")


@pytest.mark.skipif(not HAVE_EDGE, reason="qdrant-edge-py not installed")
def test_on_disk_setting_reaches_the_shard_and_survives_reopen(tmp_path):
    """``store.on_disk`` is written into the shard's config for every vector (Qdrant reads it
    when it writes a segment), and a reopen with the other value switches it (no error)."""
    import json

    from antigravity import AntigravityEngine
    from tests.conftest import HashEncoder

    e = AntigravityEngine(data_dir=str(tmp_path), encoder=HashEncoder(64), store__on_disk=True)
    e.ingest([("a", "fever"), ("b", "cats")])
    cfg = json.loads((tmp_path / "qdrant" / "edge" / "antigravity" / "edge_config.json").read_text())
    assert {v["on_disk"] for v in cfg["vectors"].values()} == {True} and set(cfg["vectors"]) == {"raw"}  # slots live in their own shards
    hits = [(h.doc_id, round(h.score, 6)) for h in e.search("fever", k=2)]
    e.close()
    e = AntigravityEngine(data_dir=str(tmp_path), encoder=HashEncoder(64))
    cfg = json.loads((tmp_path / "qdrant" / "edge" / "antigravity" / "edge_config.json").read_text())
    assert {v["on_disk"] for v in cfg["vectors"].values()} == {False}
    assert [(h.doc_id, round(h.score, 6)) for h in e.search("fever", k=2)] == hits
    e.close()
