"""Fault injection: the teacher fallback chain holds on every path that touches a teacher.

A real OpenAI-compatible embeddings server on 127.0.0.1 (or a closed port, or a teacher
model that does not exist) fails in one way per case — refused connection, timeout, HTTP
401 / 429 / 500, garbage instead of JSON, a dimension that changes after the first answer,
NaN — and each failure is driven through every entry point that uses the teacher:

* ``hybrid_cycle``: a hybrid sedimentation cycle (teacher targets, then checkpoint metadata,
  which used to probe the dead endpoint for its dimension and throw the adapter away);
* ``offline``: ``engine.run_offline_distillation`` (dimension probe, teacher inference);
* ``fusion``: a search with serving-time teacher fusion on;
* ``auto_cycle``: the same hybrid cycle started by traffic in a background thread.

Every case asserts: no exception escapes (also none in a background thread), the failure
is counted in ``stats()["teacher_failures"]``, the stored documents are unchanged, and the
engine still serves (the documented fallback: baseline targets / student ranking).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from antigravity import AntigravityEngine
from antigravity.serving.checkpoints import AdapterRegistry
from tests.conftest import HashEncoder
from tests.test_sedimentation import _corpus, _queries

BEHAVIOURS = ["refused", "timeout", "http_401", "http_429", "http_500", "garbage", "wrong_dim", "nan", "missing_model"]
ENTRY_POINTS = ["hybrid_cycle", "offline", "fusion", "auto_cycle"]
# the counter key each behaviour must move (typed TeacherError kinds)
EXPECTED_KIND = {
    "refused": "connection", "timeout": "timeout", "http_401": "http_401", "http_429": "http_429", "http_500": "http_500",
    "garbage": "malformed", "wrong_dim": "dimension", "nan": "non_finite", "missing_model": "load",
}


class FaultyTeacherServer:
    """``POST /v1/embeddings`` that fails as ``behaviour`` says (24-d hash embeddings when it answers)."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.requests = 0
        self.encoder = HashEncoder(24)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                outer.requests += 1
                n = outer.requests
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                b = outer.behaviour
                if b == "timeout":
                    time.sleep(1.5)
                if b.startswith("http_"):
                    return self._send(int(b[5:]), b'{"error": "no"}')
                if b == "garbage":
                    return self._send(200, b"<html>gateway says hello</html>")
                vecs = np.asarray(outer.encoder.encode(body["input"]), np.float32)
                if b == "wrong_dim" and n > 1:
                    vecs = vecs[:, :-1]
                rows = [[float(x) for x in v] for v in vecs]
                if b == "nan":
                    rows[0][0] = float("nan")
                data = [{"object": "embedding", "index": i, "embedding": r} for i, r in enumerate(rows)]
                self._send(200, json.dumps({"data": data}).encode())  # json writes NaN as NaN

            def _send(self, code, payload):
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up (timeout case)
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _closed_port_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def thread_errors():
    """Exceptions raised in any background thread during the test."""
    seen: list[BaseException] = []
    old = threading.excepthook
    threading.excepthook = lambda args: seen.append(args.exc_value)
    yield seen
    threading.excepthook = old


def _engine(tmp_path, behaviour: str, url: str | None, **kw) -> AntigravityEngine:
    teacher = {"teacher__name": "no-such-teacher-model"} if behaviour == "missing_model" else {
        "teacher__name": "hash", "teacher__base_url": url, "teacher__timeout_s": 0.3, "teacher__max_retries": 1,
    }
    return AntigravityEngine(
        data_dir=str(tmp_path), store__location=str(tmp_path / "qdrant"), encoder=HashEncoder(32),
        adaptation__rank=8, adaptation__epochs=3, adaptation__signal="anisotropy", gate__enabled=False, **teacher, **kw,
    )


def _run_case(tmp_path, behaviour: str, entry: str, thread_errors) -> dict:
    server = None if behaviour in ("refused", "missing_model") else FaultyTeacherServer(behaviour)
    url = _closed_port_url() if behaviour == "refused" else (server.url if server else None)
    try:
        mode = {"hybrid_cycle": "hybrid", "auto_cycle": "hybrid", "offline": "offline", "fusion": "baseline"}[entry]
        extra = {"adaptation__auto_cycle": True, "adaptation__min_signals": 40} if entry == "auto_cycle" else {}
        e = _engine(tmp_path, behaviour, url, mode=mode, **extra)
        e.ingest(_corpus())
        count, probe = e.count(), [h.doc_id for h in e.search("fever aspirin", k=5, record=False)]
        if entry == "hybrid_cycle":
            e.search_batch(_queries())
            rep = e.run_sedimentation_cycle()
            assert rep.promoted, rep.reason  # baseline targets, and the checkpoint is kept
            meta = AdapterRegistry(tmp_path, "antigravity").read_meta(rep.version)
            assert meta["teacher_fallback"] == EXPECTED_KIND[behaviour] and meta["teacher"] is None
            assert e.served_version.version == rep.version
        elif entry == "offline":
            rep = e.run_offline_distillation(_queries(20, seed=3))
            assert not rep.promoted and "teacher failed" in rep.reason
            assert e.served_version.version == 0
        elif entry == "fusion":
            e.reload_settings(teacher__fusion_weight=0.5)
            hits = e.search("fever aspirin", k=5, record=False)
            assert [h.doc_id for h in hits] == probe  # the student's ranking
        elif entry == "auto_cycle":
            e.search_batch(_queries())  # 60 signals >= min_signals: a background cycle starts
            assert e.wait_for_auto_cycle(timeout=120)
            st = e.stats()
            assert st["cycles_run"] == 1 and st["cycles_promoted"] == 1 and st.get("auto_cycle_errors", 0) == 0
        st = e.stats()
        assert e.count() == count  # nothing stored was lost or added
        assert len(e.search("fever aspirin", k=5, record=False)) == 5  # still serving
        assert not thread_errors, thread_errors
        failures = dict(st.get("teacher_failures", {}))
        kinds = {k.removeprefix("fusion_") for k in failures}
        assert EXPECTED_KIND[behaviour] in kinds, failures
        e.close()
        return failures
    finally:
        if server is not None:
            server.close()


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("behaviour", BEHAVIOURS)
def test_teacher_fault_never_escapes(tmp_path, behaviour, entry, thread_errors):
    failures = _run_case(tmp_path, behaviour, entry, thread_errors)
    assert sum(failures.values()) >= 1


def test_checkpoint_metadata_never_probes_a_dead_teacher(tmp_path):
    """The defect of the issue: a hybrid cycle with the endpoint down fell back to baseline
    targets, passed the gate, then raised TeacherError while writing checkpoint metadata (it
    asked the dead endpoint for its dimension) — the adapter was thrown away every cycle."""
    e = _engine(tmp_path, "refused", _closed_port_url(), mode="hybrid")
    e.ingest(_corpus())
    for seed in (1, 2):
        e.search_batch(_queries(seed=seed))
        rep = e.run_sedimentation_cycle()
        assert rep.promoted and rep.version == seed
    assert AdapterRegistry(tmp_path, "antigravity").versions() == [1, 2]
    assert e.stats()["teacher_failures"]["connection"] == 2
    e.close()


def test_auto_cycle_thread_survives_any_error(tmp_path, thread_errors, monkeypatch):
    """Whatever a background cycle raises is counted and logged; the thread never dies with
    an unhandled exception and the served version stays."""
    e = AntigravityEngine(
        data_dir=str(tmp_path), store__location=":memory:", encoder=HashEncoder(32), adaptation__rank=8,
        adaptation__auto_cycle=True, adaptation__min_signals=10, gate__enabled=False,
    )
    e.ingest(_corpus())

    def boom():
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(e, "run_sedimentation_cycle", boom)
    e.search_batch(_queries(20))
    assert e.wait_for_auto_cycle(timeout=60)
    assert e.stats()["auto_cycle_errors"] == 1 and e.served_version.version == 0
    assert not thread_errors
    e.close()
