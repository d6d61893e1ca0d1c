"""Teacher models for distillation, and :class:`TeacherDistillationHelper`.

One resolution rule (:func:`resolve_teacher`), validated in this order:

1. an in-memory object with ``encode(texts) -> (n, d)`` (and optionally ``dim``/``name``);
2. a model name from the registry (``all-MiniLM-L6-v2``, ``all-mpnet-base-v2``, …) or a
   local sentence-transformers folder (:class:`ModelTeacher`, embedding cache on disk);
3. an OpenAI-compatible embeddings endpoint (:class:`EndpointTeacher`):
   ``POST {base_url}/embeddings`` with ``{"model", "input"}`` →
   ``{"data": [{"embedding": [...], "index": i}]}``.

Teacher and student spaces are unrelated coordinate systems, even at equal dimension, so
every use of teacher *vectors* in student space goes through a learned alignment
(:class:`Alignment`, ridge or orthogonal Procrustes, any dimensions). Quality comes from
distilling teacher *rankings* (:mod:`antigravity.adaptation.distillation`), not coordinates.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from antigravity.encoders.cache import EmbeddingCache, normalise_text
from antigravity.core.errors import (
    TeacherAlignmentError,
    TeacherRuntimeError,
    ConfigurationError,
    TeacherConnectionError,
    TeacherDimensionError,
    TeacherError,
    TeacherHTTPError,
    TeacherLoadError,
    TeacherMalformedError,
    TeacherNonFiniteError,
    TeacherTimeoutError,
)
from antigravity.settings import mask_url

logger = logging.getLogger(__name__)


class TeacherSource(Protocol):
    name: str

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...

    def release(self) -> None: ...


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def validate_output(out: Any, n: int, dim: int | None, who: str, texts: Sequence[str] | None = None) -> np.ndarray:
    """Check a teacher's answer for ``n`` texts and return it L2-normalised, ``(n, d) float32``.

    A teacher's vectors become distillation targets and the gate's judge, so an answer that
    cannot rank anything is refused rather than used: besides shape, dimension and finiteness,
    an all-zero row (no direction: every document would score 0), and — given ``texts`` with at
    least three distinct ones (after the embedding cache's case/whitespace normalisation) —
    one vector for all of them (the judge would mark the same documents relevant for every
    text). The caller counts the refusal as a teacher failure and falls back.

    Raises:
        TeacherMalformedError: not a numeric matrix, wrong number of rows, all-zero rows, or
            one vector for every distinct text.
        TeacherDimensionError: ``dim`` given and the width differs.
        TeacherNonFiniteError: NaN or inf values.
    """
    try:
        arr = np.asarray(out, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise TeacherMalformedError(f"{who} returned something that is not a numeric matrix ({type(exc).__name__})") from None
    if arr.ndim != 2 or arr.shape[0] != n:
        raise TeacherMalformedError(f"{who} returned shape {arr.shape} for {n} texts")
    if dim is not None and arr.shape[1] != dim:
        raise TeacherDimensionError(f"{who} returned {arr.shape[1]}-d vectors, expected {dim}-d")
    if not np.isfinite(arr).all():
        raise TeacherNonFiniteError(f"{who} returned NaN or inf values")
    zero = np.flatnonzero(~(np.abs(arr) > 0).any(axis=1)) if arr.size else np.zeros(0, np.int64)
    if len(zero):
        raise TeacherMalformedError(f"{who} returned all-zero vectors for {len(zero)} of {n} texts (first at row {int(zero[0])})")
    if texts is not None and n >= 3 and not np.ptp(arr, axis=0).any() and len({normalise_text(str(t)) for t in texts}) >= 3:
        raise TeacherMalformedError(f"{who} returned one and the same vector for {n} different texts")
    return _unit(arr)


class ObjectTeacher:
    """Wraps any object with ``encode(texts)``; output validated and L2-normalised."""

    def __init__(self, obj: Any, name: str | None = None) -> None:
        if not callable(getattr(obj, "encode", None)):
            raise ConfigurationError(f"teacher object {obj!r} has no encode(texts) method")
        self.obj = obj
        self.name = name or getattr(obj, "name", type(obj).__name__)
        self._dim = getattr(obj, "dim", None)

    @property
    def dim(self) -> int:
        """Output dimension; probes ``encode`` once when the object has no ``dim``.

        Raises:
            TeacherError: the probe failed or returned no ``(1, d)`` matrix.
        """
        if self._dim is None:
            self._dim = int(self.encode(["dimension probe"]).shape[1])
        return int(self._dim)

    @property
    def known_dim(self) -> int | None:
        """The dimension if known without calling the teacher, else ``None``."""
        return None if self._dim is None else int(self._dim)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        try:
            out = self.obj.encode(list(texts))
        except TeacherError:
            raise
        except Exception as exc:  # noqa: BLE001 - any user object failure is a teacher failure
            raise TeacherRuntimeError(f"teacher {self.name!r} failed: {type(exc).__name__}: {exc}") from exc
        arr = validate_output(out, len(texts), self._dim, f"teacher {self.name!r}", texts)
        if self._dim is None:
            self._dim = int(arr.shape[1])  # later calls must keep this dimension
        return arr

    def release(self) -> None:
        """Call the wrapped object's ``release()`` if it has one (the object stays the caller's)."""
        release = getattr(self.obj, "release", None)
        if callable(release):
            release()


class ModelTeacher:
    """A registered/local sentence-transformers model via :class:`antigravity.encoders.model.Encoder`
    (lazy load, on-disk embedding cache keyed by model id and text)."""

    def __init__(self, name: str, *, cache_dir: str | Path, batch_size: int = 16, bf16: bool | None = None, precision: str | None = None) -> None:
        from antigravity.encoders.model import Encoder

        self.encoder = Encoder(name, cache_dir=cache_dir, batch_size=batch_size, bf16=bf16, precision=precision)
        self.name = self.encoder.name

    @property
    def dim(self) -> int:
        """Output dimension (registered models: without loading; others load the model).

        Raises:
            TeacherLoadError: the model cannot be loaded.
        """
        try:
            return self.encoder.dim
        except Exception as exc:  # noqa: BLE001 - ModelLoadError, OSError...
            raise TeacherLoadError(f"teacher model {self.name!r} could not be loaded: {exc}") from exc

    @property
    def known_dim(self) -> int | None:
        """The dimension if known without loading the model, else ``None``."""
        return self.encoder.known_dim

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        try:
            out = self.encoder.encode(list(texts), show_progress=show_progress)
        except TeacherError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise TeacherRuntimeError(f"teacher model {self.name!r} failed: {exc}") from exc
        return validate_output(out, len(texts), None, f"teacher {self.name!r}", texts)

    def encode_uncached(self, texts: Sequence[str]) -> np.ndarray:
        """:meth:`encode` without the on-disk cache (serving-time query traffic is unbounded)."""
        try:
            out = self.encoder.encode_uncached(list(texts))
        except Exception as exc:  # noqa: BLE001
            raise TeacherRuntimeError(f"teacher model {self.name!r} failed: {exc}") from exc
        return validate_output(out, len(texts), None, f"teacher {self.name!r}", texts)

    @property
    def loaded(self) -> bool:
        return self.encoder.loaded

    def release(self) -> None:
        self.encoder.release()


class EndpointTeacher:
    """OpenAI-compatible embeddings endpoint.

    Args:
        base_url: e.g. ``http://127.0.0.1:8080/v1``; requests go to ``{base_url}/embeddings``.
        model: the ``model`` field sent.
        api_key_env: environment variable holding the bearer token (read per request, never logged).
        timeout_s: per-request timeout (s). max_retries: retries on connection errors,
            timeouts, HTTP 429 and 5xx, with exponential backoff ``backoff_s·2^attempt``.
        batch_size: texts per request. dim: expected dimension (checked when given).
        cache_dir: if given, embeddings are cached on disk (key: base_url + model).

    Raises (from ``encode``): :class:`TeacherError` for unreachable endpoints after retries,
    HTTP errors, malformed JSON, missing/duplicate indices (partial batch), wrong dimension,
    NaN values.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "ANTIGRAVITY_TEACHER_API_KEY",
        timeout_s: float = 30.0,
        max_retries: int = 3,
        backoff_s: float = 0.2,
        batch_size: int = 64,
        dim: int | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigurationError(f"teacher.base_url = {mask_url(base_url)!r}: must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.name = model
        self.api_key_env = api_key_env
        self.timeout_s, self.max_retries, self.backoff_s, self.batch_size = timeout_s, max_retries, backoff_s, batch_size
        self._dim = dim
        self._cache_dir = cache_dir
        self._cache: EmbeddingCache | None = None
        self._client = None
        self.requests_made = 0

    @property
    def dim(self) -> int:
        """Output dimension: probes the endpoint once (one request) unless given or known.

        Raises:
            TeacherError: the probe failed (typed subclasses, see the class doc).
        """
        if self._dim is None:
            self._dim = int(self._post(["dimension probe"]).shape[1])
        return self._dim

    @property
    def known_dim(self) -> int | None:
        """The dimension if known without a request, else ``None``."""
        return self._dim

    def __repr__(self) -> str:
        return f"EndpointTeacher({mask_url(self.base_url)!r}, {self.name!r})"

    def _http(self):
        if self._client is None:
            import httpx

            self._client = httpx.Client(timeout=self.timeout_s)
        return self._client

    def _post(self, texts: list[str]) -> np.ndarray:
        import httpx

        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = f"{self.base_url}/embeddings"
        shown = mask_url(url)  # credentials in the URL are never printed
        last: str = ""
        last_cls: type[TeacherError] = TeacherError
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                self.requests_made += 1
                resp = self._http().post(url, json={"model": self.name, "input": texts}, headers=headers)
            except httpx.TimeoutException:
                last, last_cls, status = f"timed out after {self.timeout_s} s", TeacherTimeoutError, None
                continue
            except httpx.TransportError as exc:
                last, last_cls, status = f"connection failed ({type(exc).__name__})", TeacherConnectionError, None
                continue
            except httpx.HTTPError as exc:  # any other client-side failure (invalid URL, ...)
                raise TeacherConnectionError(f"teacher endpoint {shown} failed: {type(exc).__name__}") from None
            if resp.status_code == 429 or resp.status_code >= 500:
                last, last_cls, status = f"HTTP {resp.status_code}", TeacherHTTPError, resp.status_code
                continue
            if resp.status_code != 200:
                raise TeacherHTTPError(f"teacher endpoint {shown} answered HTTP {resp.status_code}", status=resp.status_code)
            return self._parse(resp.content, texts, shown)
        msg = f"teacher endpoint {shown} failed after {self.max_retries + 1} attempts: {last}"
        if last_cls is TeacherHTTPError:
            raise TeacherHTTPError(msg, status=status)
        raise last_cls(msg)

    def _parse(self, content: bytes, texts: list[str], url: str) -> np.ndarray:
        n = len(texts)
        try:
            body = json.loads(content)
            data = body["data"]
            rows: dict[int, list[float]] = {}
            for item in data:
                idx = int(item["index"])
                if idx in rows or not 0 <= idx < n:
                    raise TeacherMalformedError(f"teacher endpoint {url} returned a bad or duplicate index {idx}")
                rows[idx] = item["embedding"]
        except TeacherError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise TeacherMalformedError(f"teacher endpoint {url} returned malformed JSON ({type(exc).__name__})") from None
        if len(rows) != n:
            raise TeacherMalformedError(f"teacher endpoint {url} returned {len(rows)} embeddings for {n} inputs (partial batch)")
        try:
            mat = np.array([rows[i] for i in range(n)], dtype=np.float32)
        except (ValueError, TypeError):
            raise TeacherMalformedError(f"teacher endpoint {url} returned embeddings of unequal length or non-numbers") from None
        if mat.ndim != 2:
            raise TeacherMalformedError(f"teacher endpoint {url} returned embeddings that are not flat lists of numbers")
        arr = validate_output(mat, n, self._dim, f"teacher endpoint {url}", texts)
        if self._dim is None:
            self._dim = int(arr.shape[1])  # every later answer must keep this dimension
        return arr

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        texts = list(texts)
        if self._cache_dir is not None and self._cache is None:
            self._cache = EmbeddingCache(self._cache_dir, f"endpoint|{self.base_url}|{self.name}", self.dim, unit=True)
        if self._cache is not None:
            out, missing = self._cache.get_many(texts)
        else:
            out, missing = np.zeros((len(texts), self._dim or 0), np.float32), list(range(len(texts)))
        if missing:
            todo = [texts[i] for i in missing]
            parts = [self._post(todo[i : i + self.batch_size]) for i in range(0, len(todo), self.batch_size)]
            fresh = np.concatenate(parts)
            if out.shape[1] != fresh.shape[1]:
                out = np.zeros((len(texts), fresh.shape[1]), np.float32)
            out[missing] = fresh
            if self._cache is not None:
                self._cache.put_many(todo, fresh)
        return out

    def release(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def resolve_teacher(source: Any, *, cache_dir: str | Path, settings=None) -> TeacherSource:
    """Resolve ``source`` by the rule in the module doc. ``settings`` is a
    :class:`~antigravity.settings.TeacherSettings` (batch size, endpoint options).

    Raises:
        ConfigurationError: nothing usable given. ModelNotFoundError: unknown model name.
    """
    if source is not None and not isinstance(source, (str, Path)):
        return ObjectTeacher(source)
    bs = settings.batch_size if settings is not None else 16
    if settings is not None and settings.base_url:
        return EndpointTeacher(
            settings.base_url,
            str(source or settings.name or "teacher"),
            api_key_env=settings.api_key_env,
            timeout_s=settings.timeout_s,
            max_retries=settings.max_retries,
            batch_size=bs,
            cache_dir=cache_dir,
        )
    if source:
        return ModelTeacher(str(source), cache_dir=cache_dir, batch_size=bs, precision=settings.precision if settings is not None else None)
    raise ConfigurationError("no teacher configured: set teacher.name, teacher.base_url, or pass a teacher object")


@dataclass
class Alignment:
    """Learned linear map from teacher space to student space, ``W: (d_t, d_s)``.

    Fitted on paired vectors of the same texts: ``ridge`` solves
    ``min ‖T·W − S‖² + λ‖W‖²``; ``procrustes`` (Schönemann 1966) finds an orthogonal
    ``W`` (zero-padded when ``d_t ≠ d_s``). ``map(T)`` returns unit rows in student space.
    """

    W: np.ndarray
    method: str
    fit_cosine: float

    @classmethod
    def fit(cls, teacher: np.ndarray, student: np.ndarray, method: str = "ridge", lam: float = 1.0) -> "Alignment":
        T, S = np.asarray(teacher, np.float64), np.asarray(student, np.float64)
        if len(T) != len(S) or len(T) < 2:
            raise TeacherAlignmentError(f"alignment needs >= 2 paired rows, got {len(T)} teacher and {len(S)} student rows")
        if method == "ridge":
            W = np.linalg.solve(T.T @ T + lam * np.eye(T.shape[1]), T.T @ S)
        elif method == "procrustes":
            U, _, Vt = np.linalg.svd(T.T @ S, full_matrices=False)
            W = U @ Vt
        else:
            raise ConfigurationError(f"alignment method {method!r}: choose 'ridge' or 'procrustes'")
        W = W.astype(np.float32)
        if not np.isfinite(W).all():
            raise TeacherAlignmentError("alignment produced non-finite weights")
        fit_cos = float(np.mean(np.sum(_unit(T.astype(np.float32) @ W) * _unit(S.astype(np.float32)), axis=1)))
        return cls(W, method, fit_cos)

    def map(self, teacher: np.ndarray) -> np.ndarray:
        return _unit(np.asarray(teacher, np.float32) @ self.W)
