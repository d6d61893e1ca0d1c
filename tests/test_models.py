import numpy as np
import pytest

from antigravity.core.errors import ModelNotFoundError
from antigravity.encoders.model import REGISTRY, Encoder, canonical_name, resolve_model_path


def test_unknown_model_name(tmp_path):
    with pytest.raises(ModelNotFoundError, match="unknown model 'no-such-model'"):
        resolve_model_path("no-such-model", tmp_path)
    with pytest.raises(ModelNotFoundError):
        Encoder("no-such-model", cache_dir=tmp_path)


def test_hub_id_refused_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="hub"):
        resolve_model_path("org/some-model", tmp_path)


def test_local_folder_must_be_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="not a sentence-transformers model"):
        resolve_model_path(str(tmp_path / "empty"), tmp_path)


def test_aliases():
    assert canonical_name("sentence-transformers/all-MiniLM-L6-v2") == "all-MiniLM-L6-v2"
    assert {s.dim for s in REGISTRY.values()} == {384, 768}


@pytest.mark.models
def test_minilm_l6_encodes_normalised_and_caches(tmp_path):
    enc = Encoder("all-MiniLM-L6-v2", cache_dir=tmp_path, batch_size=4)
    texts = ["Aspirin reduces fever.", "Cats sleep a lot.", "Fever medicine works."]
    v = enc.encode(texts)
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[2] > v[0] @ v[1]  # semantically closer pair scores higher
    calls = []
    enc._forward = lambda t, p: calls.append(t) or np.zeros((len(t), 384), np.float32)  # type: ignore[method-assign]
    np.testing.assert_array_equal(enc.encode(texts), v)  # served from the cache
    assert calls == []
    # a fresh encoder on the same cache dir reuses it too
    enc2 = Encoder("all-MiniLM-L6-v2", cache_dir=tmp_path)
    enc2._forward = lambda t, p: calls.append(t) or np.zeros((len(t), 384), np.float32)  # type: ignore[method-assign]
    np.testing.assert_array_equal(enc2.encode(texts[:2]), v[:2])
    assert calls == []


@pytest.mark.models
def test_bf16_close_to_fp32(tmp_path):
    texts = ["Vaccines train the immune system.", "The stock market fell sharply today."]
    a = Encoder("all-MiniLM-L6-v2", cache_dir=tmp_path, use_cache=False, precision="fp32").encode(texts)
    b = Encoder("all-MiniLM-L6-v2", cache_dir=tmp_path, use_cache=False, bf16=True).encode(texts)
    assert (a * b).sum(axis=1).min() > 0.99


@pytest.mark.models
def test_paraphrase_l3_by_name(tmp_path):
    enc = Encoder("paraphrase-MiniLM-L3-v2", cache_dir=tmp_path)
    v = enc.encode(["a short sentence", "another one"])
    assert v.shape == (2, 384)
    assert (tmp_path / "models" / "paraphrase-MiniLM-L3-v2" / "modules.json").exists()


@pytest.mark.models
def test_mpnet_materialised_once(tmp_path):
    p1 = resolve_model_path("all-mpnet-base-v2", tmp_path)
    mtime = (tmp_path / "models" / "all-mpnet-base-v2" / "modules.json").stat().st_mtime
    assert resolve_model_path("all-mpnet-base-v2", tmp_path) == p1
    assert (tmp_path / "models" / "all-mpnet-base-v2" / "modules.json").stat().st_mtime == mtime
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.startswith(".mpnet-")]


def test_interrupted_encode_resumes_from_cache(tmp_path):
    """A long encode commits each chunk: after a crash mid-way, finished chunks are reused."""
    enc = Encoder("all-MiniLM-L6-v2", cache_dir=tmp_path, batch_size=1)  # chunk = 512 texts
    texts = [f"text number {i}" for i in range(1200)]
    calls = []

    def flaky(batch, progress):
        calls.append(len(batch))
        if len(calls) == 2:
            raise RuntimeError("killed")
        return np.ones((len(batch), 384), np.float32) / np.sqrt(384)

    enc._forward = flaky  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        enc.encode(texts)
    calls.clear()
    enc._forward = lambda batch, progress: calls.append(len(batch)) or np.ones((len(batch), 384), np.float32) / np.sqrt(384)  # type: ignore[method-assign]
    enc.encode(texts)
    assert sum(calls) == 1200 - 512  # the first chunk came from the cache
