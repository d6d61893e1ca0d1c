"""Versioned adapter checkpoints on disk: safetensors weights + JSON metadata, per collection.

Layout under the engine's data dir (``<data_dir>/adapters/<collection>/`` for the default
embedded store, ``<data_dir>/adapters/<collection>@<hash of store location or url>/`` for any
other store, see :func:`registry_for`)::

    v000001.safetensors   weights of version 1 (tensors ``doc.*`` and ``query.*``; a map shared
                          by both sides is stored once, as ``doc.*``)
    v000001.json          metadata: version, parent, mode, source, student/teacher ids and dims,
                          settings hash, metrics, created_at, adapter ranks, weights sha256
    active.json           {"version", "slot", "history"}: what the engine serves after a restart

Version 0 is the frozen student (identity adapter) and has no files. Every file is written
to a temporary name, fsynced and renamed over the target (``os.replace`` is atomic on POSIX),
so a crash (kill -9) leaves either the old or the new file, never a half-written one. A
version's files are written *before* ``active.json`` names it, so the active pointer never
refers to a missing checkpoint. Weights are read with :func:`safetensors.torch.load_file`
(no pickle) and verified against the sha256 in the metadata.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from antigravity.adaptation.adapter import ResidualAdapter
from antigravity.core.errors import CheckpointError
from antigravity.core.files import atomic_write_bytes

FORMAT_VERSION = 1
_NAME = re.compile(r"^v(\d{6,})\.json$")




def registry_for(settings: Any) -> "AdapterRegistry":
    """The :class:`AdapterRegistry` of the store ``settings`` describe. The default embedded
    store (``<data_dir>/qdrant``) keys adapters by collection name; any other store (another
    folder, or a server ``url``) adds a short hash of its location, so two stores with the
    same collection name never share (or restore) each other's adapters."""
    from pathlib import Path as _P

    root = _P(settings.data_dir).expanduser()
    if settings.store.url:
        where = settings.store.url.rstrip("/")
    else:
        loc = _P(settings.resolved_store_location).expanduser().resolve()
        where = None if loc == (root / "qdrant").resolve() else str(loc)
    name = settings.store.collection if where is None else f"{settings.store.collection}@{hashlib.sha256(where.encode()).hexdigest()[:8]}"
    reg = AdapterRegistry(root, name)
    reg.collection = settings.store.collection
    return reg


def settings_hash(settings: Any) -> str:
    """sha256 (first 16 hex digits) of the settings that shape an adapter: student, teacher
    name/weight/temperature, adaptation and gate sections (secrets and paths excluded)."""
    d = settings.model_dump(mode="json")
    keep = {
        "student": d["student"],
        "teacher": {k: d["teacher"].get(k) for k in ("name", "weight", "temperature")},
        "adaptation": d["adaptation"],
        "gate": d["gate"],
    }
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CheckpointMeta:
    """What a new checkpoint records besides its weights (see :meth:`AdapterRegistry.save`).

    Attributes:
        parent: the version served when this one was trained. mode: the engine's mode.
        source: ``sedimentation`` or ``offline_distillation``.
        student: ``{"name", "dim"}``. teacher: ``{"name", "dim"}`` or ``None``.
        settings_hash: :func:`settings_hash` of the settings that shaped it.
        metrics: the adaptation report's scalars. teacher_fallback: the failure kind when a
            hybrid cycle fell back to baseline targets.
    """

    parent: int
    mode: str
    source: str
    student: dict[str, Any]
    teacher: dict[str, Any] | None
    settings_hash: str
    metrics: dict[str, Any]
    teacher_fallback: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON fields (``teacher_fallback`` only when set)."""
        out = {k: getattr(self, k) for k in ("parent", "mode", "source", "student", "teacher", "settings_hash", "metrics")}
        return out if self.teacher_fallback is None else {**out, "teacher_fallback": self.teacher_fallback}


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: ``doc_adapter``/``query_adapter`` (``None`` = identity) and ``meta``."""

    version: int
    doc_adapter: ResidualAdapter | None
    query_adapter: ResidualAdapter | None
    meta: dict[str, Any]


class AdapterRegistry:
    """The versioned adapters of one collection, under ``<root>/adapters/<collection>/``.

    Args:
        root: the engine's data dir. collection: the Qdrant collection name.

    All methods raise :class:`CheckpointError` on unreadable, tampered or mismatched files.
    """

    def __init__(self, root: str | Path, collection: str) -> None:
        self.dir = Path(root).expanduser() / "adapters" / collection
        self.collection = collection

    # -- paths ------------------------------------------------------------------------
    def weights_path(self, version: int) -> Path:
        return self.dir / f"v{version:06d}.safetensors"

    def meta_path(self, version: int) -> Path:
        return self.dir / f"v{version:06d}.json"

    @property
    def active_path(self) -> Path:
        return self.dir / "active.json"

    # -- write ------------------------------------------------------------------------
    def save(self, version: int, doc_adapter: ResidualAdapter | None, query_adapter: ResidualAdapter | None, meta: CheckpointMeta | dict[str, Any]) -> dict[str, Any]:
        """Write version ``version`` (weights then metadata); returns the metadata written.

        ``meta``: a :class:`CheckpointMeta` (or its ``to_dict()``).

        Raises:
            CheckpointError: ``version < 1`` or the version already exists.
        """
        from safetensors.torch import save as st_save

        if isinstance(meta, CheckpointMeta):
            meta = meta.to_dict()

        if version < 1:
            raise CheckpointError(f"checkpoint version must be >= 1, got {version}")
        if self.meta_path(version).exists():
            raise CheckpointError(f"adapter version {version} already exists in {self.dir}")
        self.dir.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, torch.Tensor] = {}
        shared = doc_adapter is not None and query_adapter is doc_adapter  # one map for both sides
        for side, ad in (("doc", doc_adapter), ("query", None if shared else query_adapter)):
            if ad is not None:
                for k, v in ad.state_dict().items():
                    tensors[f"{side}.{k}"] = v.detach().cpu().contiguous().float()
        blob = st_save(tensors, metadata={"format": "antigravity-adapter", "version": str(version)})
        full = {
            "format_version": FORMAT_VERSION,
            "version": int(version),
            "collection": self.collection,
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **meta,
            "doc_adapter": None if doc_adapter is None else {"dim": doc_adapter.dim, "rank": doc_adapter.rank},
            "query_adapter": None if query_adapter is None else {"dim": query_adapter.dim, "rank": query_adapter.rank, "shared_with_doc": shared},
            "weights_file": self.weights_path(version).name,
            "weights_sha256": hashlib.sha256(blob).hexdigest(),
        }
        atomic_write_bytes(self.weights_path(version), blob)
        atomic_write_bytes(self.meta_path(version), json.dumps(full, indent=2, sort_keys=True, default=_json_default).encode())
        return full

    def set_active(self, version: int, slot: str, history: list[int]) -> None:
        """Record what is served (atomic). ``version`` 0 = frozen student.

        Raises:
            CheckpointError: ``version`` has no checkpoint on disk.
        """
        if version != 0 and not self.meta_path(version).exists():
            raise CheckpointError(f"cannot activate adapter version {version}: no checkpoint in {self.dir}")
        self.dir.mkdir(parents=True, exist_ok=True)
        data = {"version": int(version), "slot": slot, "history": [int(v) for v in history]}
        atomic_write_bytes(self.active_path, json.dumps(data, indent=2).encode())

    # -- read -------------------------------------------------------------------------
    def active(self) -> dict[str, Any]:
        """``{"version", "slot", "history"}`` of the served version (version 0 when none saved).

        Raises:
            CheckpointError: ``active.json`` is unreadable or malformed: not a JSON object; a
                field missing; ``version`` or a ``history`` entry not an integer >= 0 (``true``,
                ``1.0``, ``"1"`` are refused, never read as 1); ``slot`` not a string;
                ``history`` not a list ending with ``version`` (what :meth:`set_active` writes).
        """
        if not self.active_path.exists():
            return {"version": 0, "slot": "raw", "history": [0]}
        try:
            data = json.loads(self.active_path.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{self.active_path} is unreadable or malformed: {exc}") from None
        problem = _active_problem(data)
        if problem:
            raise CheckpointError(f"{self.active_path} is malformed: {problem}; restore it from a backup, or delete it to serve the frozen student")
        return {"version": data["version"], "slot": data["slot"], "history": list(data["history"])}

    def versions(self) -> list[int]:
        """Versions with a metadata file, ascending (version 0 not included)."""
        if not self.dir.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.dir.iterdir() if (m := _NAME.match(p.name)))

    def max_version(self) -> int:
        """Highest version on disk (0 if none): new versions are numbered above it."""
        v = self.versions()
        return v[-1] if v else 0

    def read_meta(self, version: int) -> dict[str, Any]:
        """Metadata of ``version`` (version 0: a synthetic frozen-student entry).

        Raises:
            CheckpointError: no such version, or its JSON is unreadable.
        """
        if version == 0:
            return {"version": 0, "parent": None, "source": "frozen student", "doc_adapter": None, "query_adapter": None}
        path = self.meta_path(version)
        if not path.exists():
            raise CheckpointError(f"unknown adapter version {version}; on disk: {self.versions()}")
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{path} is unreadable or not JSON: {exc}") from None
        if not isinstance(meta, dict) or not _is_version(meta.get("version")) or meta["version"] != version:  # true / 1.0 are not version 1
            shown = json.dumps(meta.get("version") if isinstance(meta, dict) else meta)[:60]
            raise CheckpointError(f"{path} is malformed (version field {shown}, expected {version})")
        return meta

    def list(self) -> list[dict[str, Any]]:
        """Metadata of every version on disk, oldest first, each with ``active`` (bool)."""
        active = self.active()["version"]
        out = [{**self.read_meta(0), "active": active == 0}]
        for v in self.versions():
            try:
                out.append({**self.read_meta(v), "active": v == active})
            except CheckpointError as exc:
                out.append({"version": v, "error": str(exc), "active": v == active})
        return out

    def load(self, version: int, *, student: str, dim: int) -> Checkpoint:
        """Load ``version`` for a running student ``student`` of dimension ``dim``.

        Raises:
            CheckpointError: unknown version; metadata unreadable; weights missing, tampered
                (sha256 mismatch) or not safetensors; student id or dimension mismatch.
        """
        meta = self.read_meta(version)
        if version == 0:
            return Checkpoint(0, None, None, meta)
        try:
            return self._load(version, meta, student=student, dim=dim)
        except CheckpointError:
            raise
        except (AttributeError, KeyError, TypeError, ValueError) as exc:  # a field missing or of the wrong type
            raise CheckpointError(f"{self.meta_path(version)} is damaged: {type(exc).__name__}: {exc}; restore it from a backup, or roll back to another version") from None

    def _load(self, version: int, meta: dict[str, Any], *, student: str, dim: int) -> Checkpoint:
        st = meta.get("student") or {}
        if st.get("name") != student or int(st.get("dim", -1)) != int(dim):
            raise CheckpointError(
                f"adapter version {version} in {self.dir} was trained for student {st.get('name')!r} ({st.get('dim')}-d); "
                f"the running student is {student!r} ({dim}-d). Use another store.collection, or roll back to 0."
            )
        path = self.weights_path(version)
        try:
            blob = path.read_bytes()
        except OSError as exc:
            raise CheckpointError(f"weights of adapter version {version} unreadable: {exc}") from None
        if hashlib.sha256(blob).hexdigest() != meta.get("weights_sha256"):
            raise CheckpointError(f"{path} does not match the sha256 in its metadata (truncated or modified)")
        from safetensors.torch import load as st_load

        try:
            tensors = st_load(blob)
        except Exception as exc:  # noqa: BLE001 - safetensors raises SafetensorError
            raise CheckpointError(f"{path} is not a valid safetensors file: {exc}") from None
        adapters: dict[str, ResidualAdapter | None] = {}
        for side in ("doc", "query"):
            spec = meta.get(f"{side}_adapter")
            if spec is None:
                adapters[side] = None
                continue
            if side == "query" and spec.get("shared_with_doc"):
                adapters[side] = adapters["doc"]
                continue
            if int(spec["dim"]) != int(dim):
                raise CheckpointError(f"adapter version {version}: {side} adapter is {spec['dim']}-d, the student {dim}-d")
            ad = ResidualAdapter(int(spec["dim"]), int(spec["rank"]))
            state = {k[len(side) + 1 :]: v for k, v in tensors.items() if k.startswith(side + ".")}
            try:
                ad.load_state_dict(state)
            except RuntimeError as exc:
                raise CheckpointError(f"adapter version {version}: {side} weights do not fit rank {spec['rank']}: {exc}") from None
            ad.set_anchor()
            ad.eval()
            adapters[side] = ad
        return Checkpoint(version, adapters["doc"], adapters["query"], meta)


def _is_version(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _active_problem(data: Any) -> str | None:
    """What is wrong with the content of ``active.json`` (the first problem, its value shown as
    in the file), or ``None``."""
    if not isinstance(data, dict):
        return f"{json.dumps(data)[:60]} is not an object"
    for key in ("version", "slot", "history"):
        if key not in data:
            return f"field {key!r} is missing"
    version, slot, history = data["version"], data["slot"], data["history"]
    if not _is_version(version):
        return f"'version' is {json.dumps(version)[:60]}, not an adapter version (an integer >= 0)"
    if not isinstance(slot, str):
        return f"'slot' is {json.dumps(slot)[:60]}, not a slot name"
    if not isinstance(history, list) or not all(_is_version(v) for v in history):
        return f"'history' is {json.dumps(history)[:60]}, not a list of adapter versions (integers >= 0)"
    if not history or history[-1] != version:
        return f"'history' {json.dumps(history)[:60]} does not end with the served 'version' {version}"
    return None


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(o)
