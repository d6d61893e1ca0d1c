"""Store faults that must surface as a typed one-line error, never as a plausible wrong answer:
Edge journal ids that NumPy's fixed-width strings would change, qdrant-client errors after open
(a server gone away, a collection dropped by another process), a server collection created by
another process after this one opened, and a search ``k`` beyond what Qdrant takes."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import numpy as np
import pytest

from antigravity.core.errors import DocumentError, QueryError, StoreError
from antigravity.stores.base import RAW, SLOTS
from antigravity.stores.qdrant import QdrantStore
from tests.test_data_ops import _docs, _engine

D = 8
SECRET = "s3cr3t-api-key-value"


def _unit(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# -- 1. Edge journal: ids kept exactly, and compactly -------------------------------------------
edge = pytest.importorskip("antigravity.stores.edge")
qe = pytest.importorskip("qdrant_edge")
EdgeStore = edge.EdgeStore

TRICKY_IDS = ["x\x00", "\x00", "a\x00\x00", "é\x00", "日本\x00", "tab\t", " lead"]


def _edge_with_slot(tmp_path) -> tuple:
    s = EdgeStore(str(tmp_path), collection="c")
    s.ensure_collection(D)
    ids = [f"d{i}" for i in range(10)]
    raw = _unit(10)
    s.upsert(ids, raw, [{"n": i} for i in range(10)])
    s.set_served(ids, SLOTS[0], raw)  # a slot shard exists: upserts and deletes are journaled
    return s, ids, raw


def _crash_after_journal(monkeypatch, method: str) -> None:
    def crash(self, *a, **k):
        raise KeyboardInterrupt("killed after the journal was written")

    monkeypatch.setattr(EdgeStore, method, crash)


def test_journaled_upsert_replays_ids_exactly(tmp_path, monkeypatch):
    s, _, _ = _edge_with_slot(tmp_path)
    new = _unit(len(TRICKY_IDS), seed=5)
    with monkeypatch.context() as m:
        _crash_after_journal(m, "_apply_upsert")
        with pytest.raises(KeyboardInterrupt):
            s.upsert(TRICKY_IDS, new, [{"i": i} for i in range(len(TRICKY_IDS))], {SLOTS[0]: new})
    assert (tmp_path / ".c.journal.npz").exists()
    s.close()
    s = EdgeStore(str(tmp_path), collection="c")  # replays the journal
    try:
        assert not (tmp_path / ".c.journal.npz").exists()
        got = s.retrieve(TRICKY_IDS)
        assert {d: p["i"] for d, p in got.items()} == {d: i for i, d in enumerate(TRICKY_IDS)}
        assert s.count() == 10 + len(TRICKY_IDS)
        assert s.search(new[:1], using=SLOTS[0], k=1)[0][0][0] == TRICKY_IDS[0]
        s.delete(TRICKY_IDS)  # each one can be deleted under its own id
        assert s.count() == 10 and not s.retrieve(TRICKY_IDS)
    finally:
        s.close()


def test_journaled_delete_replays_ids_exactly(tmp_path, monkeypatch):
    s, _, _ = _edge_with_slot(tmp_path)
    new = _unit(len(TRICKY_IDS), seed=5)
    s.upsert(TRICKY_IDS, new, [{} for _ in TRICKY_IDS], {SLOTS[0]: new})
    s.upsert(["x"], _unit(1, seed=9), [{}], {SLOTS[0]: _unit(1, seed=9)})  # what "x\x00" would become
    with monkeypatch.context() as m:
        _crash_after_journal(m, "_apply_delete")
        with pytest.raises(KeyboardInterrupt):
            s.delete(TRICKY_IDS)
    s.close()
    s = EdgeStore(str(tmp_path), collection="c")
    try:
        assert not s.retrieve(TRICKY_IDS) and set(s.retrieve(["x"])) == {"x"}
        assert s.count() == 11 and s.count_vectors(SLOTS[0]) == 11
    finally:
        s.close()


def test_one_long_id_does_not_inflate_the_journal(tmp_path, monkeypatch):
    s, _, _ = _edge_with_slot(tmp_path)
    long_id = "L" * 50_000
    ids = [long_id] + [f"s{i}" for i in range(99)]
    new = _unit(100, seed=3)
    with monkeypatch.context() as m:
        _crash_after_journal(m, "_apply_upsert")
        with pytest.raises(KeyboardInterrupt):
            s.upsert(ids, new, [{} for _ in ids], {SLOTS[0]: new})
    # fixed-width str: 100 ids x 50,000 chars x 4 bytes = 20 MB; as JSON bytes ~ the ids' length
    assert (tmp_path / ".c.journal.npz").stat().st_size < 1_000_000
    s.close()
    s = EdgeStore(str(tmp_path), collection="c")
    try:
        assert long_id in s.retrieve([long_id]) and s.count() == 110
    finally:
        s.close()


def test_a_journal_of_the_earlier_format_is_still_replayed(tmp_path):
    s, _, _ = _edge_with_slot(tmp_path)
    s.close()
    new = _unit(2, seed=4)
    text = json.dumps([{"doc_id": "n0", "k": 0}, {"doc_id": "n1", "k": 1}])
    with open(tmp_path / ".c.journal.npz", "wb") as f:  # as earlier versions wrote it
        np.savez(f, op=np.array("upsert"), ids=np.array(["n0", "n1"], dtype=str), raw=new, payloads=np.array(text),
                 clear=np.array([], dtype=str), **{f"served.{SLOTS[0]}": new})
    s = EdgeStore(str(tmp_path), collection="c")
    try:
        assert not (tmp_path / ".c.journal.npz").exists()
        assert s.retrieve(["n0", "n1"]) == {"n0": {"k": 0}, "n1": {"k": 1}} and s.count_vectors(SLOTS[0]) == 12
    finally:
        s.close()


# -- 4. search k beyond a u64 limit ----------------------------------------------------------------
@pytest.fixture(params=["edge", "local"])
def small_store(request):
    s = EdgeStore(":memory:", collection="c") if request.param == "edge" else QdrantStore(":memory:", collection="c")
    s.ensure_collection(D)
    s.upsert([f"d{i}" for i in range(5)], _unit(5), [{} for _ in range(5)])
    yield s
    s.close()


@pytest.mark.parametrize("k", [2**63, 2**64, 2**64 + 7, 10**5000], ids=["2**63", "2**64", "2**64+7", "10**5000"])
def test_a_huge_k_is_a_query_error_naming_it(small_store, k):
    """Edge took the limit as a u64: k = 2**64 was a bare OverflowError (the bound is
    :func:`antigravity.stores.shared.check_k`'s; both stores answer alike)."""
    with pytest.raises(QueryError, match=r"search: k must be an integer") as exc:
        small_store.search(_unit(1), RAW, k)
    assert (str(k) if k < 10**30 else "bits") in str(exc.value) and "\n" not in str(exc.value)


def test_the_largest_k_returns_every_document(small_store):
    from antigravity.stores.shared import MAX_K

    assert len(small_store.search(_unit(2), RAW, MAX_K)[1]) == 5


# -- 2. QdrantStore: qdrant-client errors after open are StoreErrors --------------------------------
def _fake_server(monkeypatch):
    """One in-process local-mode client shared by every QdrantStore, whatever its url: the
    QdrantStore code path of a server, with another process's view of the same collection."""
    import qdrant_client

    shared = qdrant_client.QdrantClient(location=":memory:")

    class FakeServerClient:
        def __init__(self, *a, **k):
            pass

        def __getattr__(self, name):
            return getattr(shared, name)

        def close(self):
            pass

    monkeypatch.setattr(qdrant_client, "QdrantClient", FakeServerClient)
    return shared


URL = "http://admin:pw-in-url@qdrant.internal:6333"


def _client_errors():
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    return {
        "ResponseHandlingException": lambda: ResponseHandlingException(httpx.ConnectError(f"[Errno 111] Connection refused api-key={SECRET}")),
        "UnexpectedResponse": lambda: UnexpectedResponse(404, "Not Found", b'{"status":{"error":"Not found: Collection `c` doesn\'t exist!"}}\nline two', httpx.Headers()),
        "ValueError": lambda: ValueError("Collection c not found"),
        "httpx.ReadTimeout": lambda: httpx.ReadTimeout(f"timed out at {URL}"),
        "RuntimeError": lambda: RuntimeError("grpc channel closed"),
    }


class _Failing:
    """A client every call of which raises ``make()``."""

    def __init__(self, make):
        self.make = make

    def __getattr__(self, name):
        def fail(*a, **k):
            raise self.make()

        return fail


OPS = {
    "search": lambda s: s.search(_unit(1), RAW, 3),
    "count": lambda s: s.count(),
    "count_vectors": lambda s: s.count_vectors(RAW),
    "count_empty": lambda s: s.count_empty(),
    "retrieve": lambda s: s.retrieve(["d1"]),
    "existing_ids": lambda s: s.existing_ids(["d1"]),
    "delete": lambda s: s.delete(["d1"]),
    "upsert": lambda s: s.upsert(["n"], _unit(1), [{}]),
    "set_served": lambda s: s.set_served(["d1"], SLOTS[0], _unit(1)),
    "clear_served": lambda s: s.clear_served(SLOTS[0]),
    "iter_payloads": lambda s: list(s.iter_payloads()),
    "iter_vectors": lambda s: list(s.iter_vectors()),
    "indexed_vectors_count": lambda s: s.indexed_vectors_count(),
    "create_payload_index": lambda s: s.create_payload_index("lang", "keyword"),
    "drop_collection": lambda s: s.drop_collection(),
}


@pytest.fixture
def server_store(monkeypatch):
    _fake_server(monkeypatch)
    s = QdrantStore(url=URL, api_key=SECRET, collection="c")
    s.ensure_collection(D)
    s.upsert([f"d{i}" for i in range(5)], _unit(5), [{"lang": "en"} for _ in range(5)])
    yield s
    s.close()


@pytest.mark.parametrize("error", list(_client_errors()))
@pytest.mark.parametrize("op", list(OPS))
def test_client_errors_after_open_are_one_line_store_errors(server_store, op, error):
    server_store.client = _Failing(_client_errors()[error])
    with pytest.raises(StoreError) as exc:
        OPS[op](server_store)
    msg = str(exc.value)
    assert "\n" not in msg and "'c'" in msg and "qdrant.internal:6333" in msg, msg
    assert SECRET not in msg and "pw-in-url" not in msg, msg
    assert msg.split(" failed on ")[0] in {op, "count", "retrieve", "scroll", "info", "check for the collection"}, msg


def test_our_own_errors_are_not_turned_into_store_errors(server_store):
    server_store.client = _Failing(_client_errors()["ValueError"])
    with pytest.raises(QueryError):
        server_store.search(_unit(1), RAW, -1)
    with pytest.raises(QueryError):
        server_store.search(np.full((1, D), np.nan, np.float32), RAW, 3)
    with pytest.raises(QueryError):
        server_store.search(_unit(1), RAW, 3, filter={"lang": 1.5})
    with pytest.raises(DocumentError):
        server_store.upsert(["n"], np.full((1, D), np.inf, np.float32), [{}])


def test_a_collection_dropped_by_another_process_is_a_store_error(monkeypatch):
    shared = _fake_server(monkeypatch)
    s = QdrantStore(url=URL, collection="c")
    s.ensure_collection(D)
    s.upsert(["a"], _unit(1), [{}])
    shared.delete_collection("c")
    for op in ("search", "count", "retrieve", "delete", "upsert", "iter_payloads"):
        with pytest.raises(StoreError, match=r"failed on collection 'c' on the Qdrant server .*Collection c not found"):
            OPS[op](s)


class _StubQdrant(BaseHTTPRequestHandler):
    """Answers what QdrantStore asks at open (no collection yet)."""

    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path.rstrip("/").endswith("/exists"):
            body = {"result": {"exists": False}, "status": "ok", "time": 0}
        else:
            body = {"result": {"collections": []}, "status": "ok", "time": 0}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_a_server_gone_after_open_is_a_store_error_naming_it(tmp_path):
    srv = HTTPServer(("127.0.0.1", 0), _StubQdrant)
    port = srv.server_address[1]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    e = _engine(tmp_path, store__url=f"http://127.0.0.1:{port}", store__api_key=SECRET, store__timeout_s=2)
    try:
        srv.shutdown()
        srv.server_close()
        with pytest.raises(StoreError, match=rf"on the Qdrant server http://127\.0\.0\.1:{port}: ResponseHandlingException") as exc:
            e.ingest(_docs(5))
        assert "\n" not in str(exc.value) and SECRET not in str(exc.value)
    finally:
        e.close()


# -- 3. a server collection another process creates after this store opened -----------------------
def test_a_store_opened_before_the_collection_sees_it_once_created(monkeypatch):
    _fake_server(monkeypatch)
    worker = QdrantStore(url=URL, collection="c")
    assert worker.dim is None and worker.count() == 0
    indexer = QdrantStore(url=URL, collection="c")
    indexer.ensure_collection(D)
    x = _unit(6)
    indexer.upsert([f"d{i}" for i in range(6)], x, [{"lang": "en"} for _ in range(6)])
    worker._checked_at = None  # as if recheck_s had passed
    assert worker.count() == 6 and worker.dim == D
    assert worker.search(x[:1], RAW, 1)[0][0][0] == "d0" and set(worker.retrieve(["d3"])) == {"d3"}
    assert len(list(worker.iter_payloads())) == 6


@pytest.mark.parametrize("read", ["search", "count", "retrieve", "iter_payloads", "existing_ids", "count_vectors"])
def test_every_read_rechecks_a_missing_server_collection(monkeypatch, read):
    _fake_server(monkeypatch)
    worker = QdrantStore(url=URL, collection="c")
    indexer = QdrantStore(url=URL, collection="c")
    indexer.ensure_collection(D)
    indexer.upsert([f"d{i}" for i in range(5)], _unit(5), [{} for _ in range(5)])
    out = OPS[read](worker)
    assert worker.dim == D and out not in (0, [], {}, set(), [[]]), out


def test_the_recheck_is_rate_limited(monkeypatch):
    _fake_server(monkeypatch)
    worker = QdrantStore(url=URL, collection="c")
    calls = []
    real = worker.client.collection_exists
    monkeypatch.setattr(worker, "client", type("C", (), {"__getattr__": lambda self, n: getattr(real.__self__, n),
                                                          "collection_exists": lambda self, c: calls.append(c) or real(c)})())
    for _ in range(50):
        assert worker.count() == 0 and worker.search(_unit(1), RAW, 3) == [[]]
    assert len(calls) == 1  # the first read checked; the others within recheck_s did not
    worker._checked_at -= worker.recheck_s
    worker.count()
    assert len(calls) == 2


def test_ensure_collection_adopts_one_another_process_created(monkeypatch):
    _fake_server(monkeypatch)
    worker = QdrantStore(url=URL, collection="c")
    indexer = QdrantStore(url=URL, collection="c")
    indexer.ensure_collection(D)
    indexer.upsert(["a"], _unit(1), [{}])
    worker.ensure_collection(D)  # not a create_collection error: it exists with the same dimension
    assert worker.count() == 1
    other = QdrantStore(url=URL, collection="c2")
    QdrantStore(url=URL, collection="c2").ensure_collection(D)
    with pytest.raises(StoreError, match=r"collection 'c2' holds 8-d vectors; the student makes 16-d"):
        other.ensure_collection(16)


def test_an_engine_worker_started_before_the_indexer_answers(tmp_path, monkeypatch):
    _fake_server(monkeypatch)
    worker = _engine(tmp_path, store__url=URL)
    indexer = _engine(tmp_path, store__url=URL)
    try:
        assert indexer.ingest(_docs(30)) == 30
        worker.store._checked_at = None  # as if recheck_s had passed
        assert worker.count() == 30
        want = [h.doc_id for h in indexer.search("fever aspirin", k=3, record=False)]
        assert [h.doc_id for h in worker.search("fever aspirin", k=3, record=False)] == want and worker.get("d1") is not None
    finally:
        worker.close()
        indexer.close()
