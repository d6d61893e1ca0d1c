"""Shared fixtures. ``HashEncoder`` is a deterministic stand-in for a student model in fast
tests: bag-of-words hashing into ``dim`` buckets, L2-normalised — texts sharing words get
higher cosine, so rankings are meaningful without loading a network."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_SCIFACT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scifact"


class HashEncoder:
    """:class:`antigravity.encoders.EncoderProtocol` (``name``, ``dim``, ``encode``,
    ``encode_uncached``, ``release``) without a model; ``encode`` delegates to ``encode_uncached``."""

    def __init__(self, dim: int = 64, name: str = "hash-encoder") -> None:
        self.name = name
        self.dim = dim
        self.calls = 0

    def encode_uncached(self, texts, show_progress=False):
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"\w+", t.lower()):
                h = int(hashlib.md5(w.encode()).hexdigest(), 16)
                out[i, h % self.dim] += 1.0 if (h >> 64) % 2 else -1.0
            out[i, (len(t) * 7) % self.dim] += 0.01  # no all-zero rows
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def encode(self, texts, show_progress=False):
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] must be str")
        return self.encode_uncached(list(texts))

    def release(self):
        pass


@pytest.fixture
def hash_encoder():
    return HashEncoder()


@pytest.fixture
def engine(tmp_path, hash_encoder):
    from antigravity import AntigravityEngine

    eng = AntigravityEngine(data_dir=str(tmp_path), store__location=":memory:", encoder=hash_encoder)
    yield eng
    eng.close()


TOY_DOCS = [
    {"_id": "d1", "title": "Aspirin", "text": "Aspirin reduces fever and pain in adults."},
    {"_id": "d2", "title": "Cats", "text": "Cats sleep for most of the day."},
    {"_id": "d3", "title": "Vaccines", "text": "Vaccines train the immune system against viruses."},
    {"_id": "d4", "title": "Fever", "text": "A fever is a raised body temperature, often caused by infection."},
    {"_id": "d5", "title": "Dogs", "text": "Dogs are loyal animals that enjoy walks."},
]


@pytest.fixture
def toy_beir(tmp_path) -> Path:
    """A tiny BEIR directory; queries carry ``metadata`` that must never be read."""
    d = tmp_path / "toy"
    (d / "qrels").mkdir(parents=True)
    with open(d / "corpus.jsonl", "w") as fh:
        for doc in TOY_DOCS:
            fh.write(json.dumps({**doc, "metadata": {}}) + "\n")
    queries = [
        {"_id": "q1", "text": "aspirin fever pain", "metadata": {"d1": [{"label": "SUPPORT"}]}},
        {"_id": "q2", "text": "cats sleep day", "metadata": {}},
        {"_id": "q3", "text": "immune system vaccines", "metadata": {}},
        {"_id": "q4", "text": "dogs walks", "metadata": {}},
        {"_id": "q5", "text": "body temperature infection", "metadata": {}},
    ]
    with open(d / "queries.jsonl", "w") as fh:
        for q in queries:
            fh.write(json.dumps(q) + "\n")
    (d / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\nq3\td3\t1\n")
    (d / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq4\td5\t1\nq5\td4\t1\n")
    return d
