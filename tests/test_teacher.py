"""Teacher sources, including an OpenAI-compatible endpoint served over real HTTP on 127.0.0.1."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from antigravity.core.errors import ConfigurationError, TeacherError
from antigravity.teacher import Alignment, EndpointTeacher, ObjectTeacher, resolve_teacher
from tests.conftest import HashEncoder


class EmbeddingServer:
    """``POST /v1/embeddings`` backed by ``encoder``; ``behaviour`` injects failures."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.behaviour = "ok"
        self.requests = 0
        self.auth_headers = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                outer.requests += 1
                outer.auth_headers.append(self.headers.get("Authorization"))
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                texts = body["input"]
                b = outer.behaviour
                if b == "429_once" and outer.requests == 1 or b == "429":
                    return self._send(429, b'{"error": "rate limited"}')
                if b == "500":
                    return self._send(500, b"oops")
                if b == "slow":
                    time.sleep(1.0)
                if b == "malformed":
                    return self._send(200, b'{"data": [ {"embedding": ')
                vecs = np.asarray(outer.encoder.encode(texts), np.float32)
                if b == "wrong_dim":
                    vecs = vecs[:, :-1]
                if b == "nan":
                    vecs[0, 0] = np.nan
                data = [{"object": "embedding", "index": i, "embedding": [float(x) if np.isfinite(x) else "NaN" for x in v]} for i, v in enumerate(vecs)]
                if b == "partial":
                    data = data[:-1]
                if b == "nan":
                    payload = json.dumps({"data": data}).replace('"NaN"', "NaN").encode()
                else:
                    payload = json.dumps({"object": "list", "data": data, "model": body["model"]}).encode()
                self._send(200, payload)

            def _send(self, code, payload):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server():
    s = EmbeddingServer(HashEncoder(24))
    yield s
    s.close()


def _teacher(server, **kw):
    kw.setdefault("timeout_s", 2.0)
    kw.setdefault("max_retries", 2)
    kw.setdefault("backoff_s", 0.01)
    return EndpointTeacher(server.url, "hash", **kw)


def test_endpoint_ok_batches_and_normalises(server, monkeypatch):
    monkeypatch.setenv("ANTIGRAVITY_TEACHER_API_KEY", "s3cret")
    t = _teacher(server, batch_size=2)
    out = t.encode(["a b", "c d", "e f", "g"])
    assert out.shape == (4, 24)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out, HashEncoder(24).encode(["a b", "c d", "e f", "g"]), atol=1e-6)
    assert server.requests == 2 and server.auth_headers == ["Bearer s3cret"] * 2
    assert t.dim == 24


def test_endpoint_key_never_logged(server, monkeypatch, caplog):
    monkeypatch.setenv("ANTIGRAVITY_TEACHER_API_KEY", "s3cret")
    server.behaviour = "500"
    with caplog.at_level("DEBUG"), pytest.raises(TeacherError) as exc:
        _teacher(server).encode(["x"])
    assert "s3cret" not in caplog.text and "s3cret" not in str(exc.value)


def test_endpoint_retries_429_then_succeeds(server):
    server.behaviour = "429_once"
    assert _teacher(server).encode(["x y"]).shape == (1, 24)
    assert server.requests == 2


@pytest.mark.parametrize(
    "behaviour,match",
    [
        ("429", "HTTP 429"),
        ("500", "HTTP 500"),
        ("malformed", "malformed JSON"),
        ("nan", "NaN"),
        ("partial", "partial batch"),
    ],
)
def test_endpoint_failures(server, behaviour, match):
    server.behaviour = behaviour
    with pytest.raises(TeacherError, match=match):
        _teacher(server).encode(["a", "b", "c"])


def test_endpoint_wrong_dimension(server):
    server.behaviour = "wrong_dim"
    with pytest.raises(TeacherError, match="23-d vectors, expected 24-d"):
        _teacher(server, dim=24).encode(["a", "b"])


def test_endpoint_timeout(server):
    server.behaviour = "slow"
    t0 = time.perf_counter()
    with pytest.raises(TeacherError, match="timed out"):
        _teacher(server, timeout_s=0.2, max_retries=1).encode(["a"])
    assert time.perf_counter() - t0 < 5


def test_endpoint_connection_refused():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    t = EndpointTeacher(f"http://127.0.0.1:{port}/v1", "m", timeout_s=1, max_retries=1, backoff_s=0.01)
    with pytest.raises(TeacherError, match="connection failed"):
        t.encode(["a"])


def test_endpoint_cache(server, tmp_path):
    t = _teacher(server, cache_dir=tmp_path, dim=24)
    a = t.encode(["one", "two"])
    n = server.requests
    b = _teacher(server, cache_dir=tmp_path, dim=24).encode(["two", "one"])
    np.testing.assert_allclose(a[::-1], b)
    assert server.requests == n


def test_bad_base_url():
    with pytest.raises(ConfigurationError, match="base_url"):
        EndpointTeacher("ftp://x", "m")


@pytest.mark.models
def test_endpoint_serving_real_model(tmp_path):
    from antigravity.encoders.model import Encoder

    enc = Encoder("all-MiniLM-L6-v2", cache_dir=tmp_path, use_cache=False)
    srv = EmbeddingServer(enc)
    try:
        texts = ["Aspirin reduces fever.", "Vaccines train the immune system."]
        got = EndpointTeacher(srv.url, "all-MiniLM-L6-v2", timeout_s=60).encode(texts)
        np.testing.assert_allclose(got, enc.encode(texts), atol=1e-5)
    finally:
        srv.close()


def test_resolution_order(tmp_path):
    from antigravity.settings import TeacherSettings

    obj = HashEncoder(16)
    assert isinstance(resolve_teacher(obj, cache_dir=tmp_path), ObjectTeacher)
    ts = TeacherSettings(name="x", base_url="http://127.0.0.1:1/v1")
    assert isinstance(resolve_teacher(None, cache_dir=tmp_path, settings=ts), EndpointTeacher)
    with pytest.raises(ConfigurationError, match="no teacher configured"):
        resolve_teacher(None, cache_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="no encode"):
        ObjectTeacher(object())


def test_object_teacher_validates_output():
    class Bad:
        def encode(self, texts):
            return np.full((len(texts), 4), np.nan)

    with pytest.raises(TeacherError, match="NaN"):
        ObjectTeacher(Bad()).encode(["a"])


def test_alignment_any_dimensions():
    rng = np.random.default_rng(0)
    S = rng.standard_normal((200, 16)).astype(np.float32)
    M = rng.standard_normal((16, 40)).astype(np.float32)
    T = S @ M  # a 40-d "teacher" that is a linear function of the 16-d student
    for method in ("ridge", "procrustes"):
        a = Alignment.fit(T, S, method, lam=1e-3)
        assert a.W.shape == (40, 16)
        assert a.map(T).shape == (200, 16)
    assert Alignment.fit(T, S, "ridge", lam=1e-3).fit_cosine > 0.99
    with pytest.raises(ConfigurationError):
        Alignment.fit(T, S, "magic")
    with pytest.raises(TeacherError, match=">= 2 paired rows"):
        Alignment.fit(T[:1], S[:1])
