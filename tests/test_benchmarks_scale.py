"""benchmarks/scale.py streams its synthetic documents: the streamed rows must be the matrix
``make_data`` builds, bit for bit, or the engine and the raw/faiss sides (and earlier runs)
would be measured on different vectors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_spec = importlib.util.spec_from_file_location("scale_bench", Path(__file__).resolve().parents[1] / "benchmarks" / "scale.py")
scale = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scale)  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["gaussian", "lowrank"])
def test_streamed_documents_equal_the_matrix(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scale, "CHUNK", 700)  # several chunks, the last one short
    n, nq = 2_500, 7
    docs, queries = scale.make_data(kind, 3, n, nq)
    s = scale.StreamedDocs(kind, 3, n, nq)
    assert np.array_equal(s.materialise(), docs)
    assert np.array_equal(s.queries, queries)
    idx = np.array([2_499, 0, 700, 699, 1_401, 5])
    assert np.array_equal(s[idx], docs[idx])
    assert np.array_equal(s[1_399], docs[1_399])
    assert np.array_equal(s[690:1_410], docs[690:1_410])
    assert len(s) == n


def test_exact_top_k_reads_streamed_documents() -> None:
    s = scale.StreamedDocs("lowrank", 1, 1_000, 5)
    truth = scale.exact_top_k(s, s.queries, chunk=300)
    full = s.materialise()
    expected = np.argsort(-(s.queries @ full.T), axis=1, kind="stable")[:, : scale.K]
    assert np.array_equal(truth, expected)
