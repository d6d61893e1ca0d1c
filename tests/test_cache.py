import numpy as np
import pytest

from antigravity.encoders.cache import EmbeddingCache, normalise_text, text_key


def test_roundtrip_and_missing(tmp_path):
    c = EmbeddingCache(tmp_path, "m1", 4)
    vecs = np.arange(8, dtype=np.float32).reshape(2, 4)
    c.put_many(["a b", "c"], vecs)
    out, missing = c.get_many(["a  b ", "zzz", "c"])
    assert missing == [1]
    np.testing.assert_array_equal(out[0], vecs[0])
    np.testing.assert_array_equal(out[2], vecs[1])
    assert len(c) == 2


def test_key_normalisation():
    assert normalise_text("  a\t\nb ") == "a b"
    assert text_key("a b") == text_key(" a  b")
    assert text_key("a b") != text_key("ab")


def test_models_do_not_share_entries(tmp_path):
    EmbeddingCache(tmp_path, "m1", 2).put_many(["x"], np.ones((1, 2), np.float32))
    _, missing = EmbeddingCache(tmp_path, "m2", 2).get_many(["x"])
    assert missing == [0]


def test_persists_across_instances(tmp_path):
    EmbeddingCache(tmp_path, "m", 3).put_many(["x"], np.full((1, 3), 0.5, np.float32))
    out, missing = EmbeddingCache(tmp_path, "m", 3).get_many(["x"])
    assert missing == [] and out[0, 0] == 0.5


def test_non_finite_rows_not_cached(tmp_path):
    c = EmbeddingCache(tmp_path, "m", 2)
    c.put_many(["ok", "bad"], np.array([[1, 0], [np.nan, 0]], np.float32))
    _, missing = c.get_many(["ok", "bad"])
    assert missing == [1]


def test_truncated_file_recovers(tmp_path):
    c = EmbeddingCache(tmp_path, "m", 2)
    c.put_many([f"t{i}" for i in range(200)], np.ones((200, 2), np.float32))
    c.close()
    for suffix in ("-wal", "-shm"):
        p = type(c.path)(str(c.path) + suffix)
        if p.exists():
            p.unlink()
    data = c.path.read_bytes()
    c.path.write_bytes(data[: len(data) // 3] + b"\x00garbage")
    c2 = EmbeddingCache(tmp_path, "m", 2)  # must not raise
    out, missing = c2.get_many(["t0"])
    assert missing == [0]
    c2.put_many(["t0"], np.ones((1, 2), np.float32))
    assert c2.get_many(["t0"])[1] == []
    assert list(tmp_path.glob("embeddings/*.corrupt-*")), "damaged file is kept aside for inspection"


def test_shape_mismatch(tmp_path):
    c = EmbeddingCache(tmp_path, "m", 2)
    with pytest.raises(ValueError, match="shape"):
        c.put_many(["a"], np.ones((1, 3), np.float32))
