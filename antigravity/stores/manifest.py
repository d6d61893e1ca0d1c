"""The collection manifest: which student built a collection, in which store format.

Written beside the collection's adapters (``<adapters dir>/manifest.json``, the folder
:func:`antigravity.serving.checkpoints.registry_for` names, so one manifest per store location and
collection) when the collection is created, before its first point::

    {"format": "antigravity-collection-manifest", "store_format_version": 1,
     "collection": "antigravity", "store": "<where>", "created_at": "...",
     "student": {"name", "revision", "dim", "max_seq_length", "dtype", "normalized"},
     "documents": 120}

``revision`` is the sha256 of the student's weight files (computed once per model folder
and cached, see :func:`antigravity.encoders.model.weights_fingerprint`); ``documents`` is a lower
bound on the stored documents (updated after each ingest call; documents are never deleted
by the engine), so a store holding fewer points than its manifest is damaged, not empty.
Every field above has been written since the first manifest (store format version 1): a
manifest missing one, or holding one of the wrong type (e.g. ``documents`` ``true`` or ``-5``),
is damaged and refused (:class:`ManifestError` naming the field and the file), never read
with a default. Only ``backend`` (``edge`` / ``local`` / ``server``, added later within
version 1) may be absent or ``null``: such a collection was written by qdrant-client.

Every engine open compares the running student with the manifest field by field and
refuses a difference (:class:`ManifestError`, one line naming both sides). A deliberate
re-index with another student is ``AntigravityEngine(..., reindex=True)`` /
``antigravity index CORPUS --reindex``: the collection is dropped, the old adapters are
moved aside, and a new manifest is written. A collection made before manifests existed is
adopted for the running student with ``AntigravityEngine(..., adopt=True)`` /
``antigravity adopt``.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from antigravity.core.errors import ManifestError

STORE_FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
_FORMAT = "antigravity-collection-manifest"
IDENTITY_FIELDS = ("name", "revision", "dim", "max_seq_length", "dtype", "normalized")


def student_identity(encoder: Any) -> dict[str, Any]:
    """The identity of a student encoder: ``{"name", "revision", "dim", "max_seq_length",
    "dtype", "normalized"}``. Uses ``encoder.identity()`` when the encoder has one
    (:class:`antigravity.encoders.model.Encoder`); otherwise (test stubs, custom encoders) its
    ``name``, ``dim`` and optional ``revision``/``max_seq_length``/``precision`` attributes
    (``precision``: ``"fp32"``/``"bf16"``; an encoder with only the old ``bf16`` attribute is
    read as ``bf16`` → ``"bf16"``; neither → ``"fp32"``).

    Raises:
        ModelNotFoundError / ModelLoadError: the model's files cannot be found to hash.
    """
    ident = getattr(encoder, "identity", None)
    if callable(ident):
        return dict(ident())
    return {
        "name": str(encoder.name),
        "revision": getattr(encoder, "revision", None),
        "dim": int(encoder.dim),
        "max_seq_length": getattr(encoder, "max_seq_length", None) or "default",
        "dtype": str(getattr(encoder, "precision", None) or ("bf16" if getattr(encoder, "bf16", False) else "fp32")),
        "normalized": bool(getattr(encoder, "normalized", True)),
    }


def stored_backend(manifest: dict[str, Any]) -> str:
    """The store backend that wrote a collection: the manifest's ``backend``; manifests
    written before backends existed came from qdrant-client (local mode or a server)."""
    return manifest.get("backend") or "local"


def describe_student(ident: dict[str, Any]) -> str:
    """``name (384-d, revision 1a2b3c4d5e6f, seq default, fp32)`` for messages."""
    rev = ident.get("revision")
    rev_s = f"revision {str(rev)[:12]}" if rev else "no revision"
    norm = "" if ident.get("normalized", True) else ", not normalised"
    return f"{ident.get('name')!r} ({ident.get('dim')}-d, {rev_s}, seq {ident.get('max_seq_length')}, {ident.get('dtype')}{norm})"


def identity_differences(stored: dict[str, Any], running: dict[str, Any]) -> list[str]:
    """Names of the identity fields that differ between ``stored`` and ``running``."""
    return [f for f in IDENTITY_FIELDS if stored.get(f) != running.get(f)]


def _shown(value: Any) -> str:
    """A manifest value as it reads in the JSON file (``true``, ``-5``, ``"30"``), shortened."""
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


PAYLOAD_FIELDS = "payload_fields"
"""Optional manifest field: every payload key stored (dotted for nested objects) with the kinds
of value under it, so a filter check needs no scan of the payloads (``DocumentCollection``);
absent in manifests written before it or by ``adopt``, then built by one scan and written."""
PAYLOAD_KINDS = frozenset({"str", "int", "float", "bool", "object"})

#: the fields every manifest of store format version 1 holds (all written since manifests
#: exist), with a check of their value and what it must be; ``backend`` (added later within
#: version 1) is optional: absent or ``None`` means a qdrant-client collection
#: (:func:`stored_backend`)
_FIELDS: dict[str, tuple[Any, str]] = {
    "collection": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "store": (lambda v: isinstance(v, str), "a string"),
    "created_at": (lambda v: isinstance(v, str), "a string"),
    "documents": (lambda v: _is_int(v, 0), "an integer >= 0"),
}
_STUDENT_FIELDS: dict[str, tuple[Any, str]] = {
    "name": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "revision": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "dim": (lambda v: _is_int(v, 1), "an integer >= 1"),
    "max_seq_length": (lambda v: _is_int(v, 1) or isinstance(v, str), "an integer >= 1 or a string"),
    "dtype": (lambda v: isinstance(v, str), "a string"),
    "normalized": (lambda v: isinstance(v, bool), "true or false"),
}
BACKENDS = ("edge", "local", "server")


def manifest_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with a version-1 manifest's fields (the first missing or wrong-typed one,
    named), or ``None``. ``documents`` guards against a truncated store (the integrity check
    compares it with the stored count), so a missing, boolean, negative or non-integer value
    is damage, never read as 0."""
    for field, (ok, want) in _FIELDS.items():
        if field not in data:
            return f"field {field!r} is missing"
        if not ok(data[field]):
            return f"field {field!r} is {_shown(data[field])}, not {want}"
    student = data["student"]
    for field, (ok, want) in _STUDENT_FIELDS.items():
        if field not in student:
            return f"field 'student.{field}' is missing"
        if not ok(student[field]):
            return f"field 'student.{field}' is {_shown(student[field])}, not {want}"
    backend = data.get("backend")
    if backend is not None and backend not in BACKENDS:
        return f"field 'backend' is {_shown(backend)}, not one of {', '.join(BACKENDS)} or null"
    fields = data.get(PAYLOAD_FIELDS)
    if fields is not None and not (isinstance(fields, dict) and all(isinstance(k, str) and isinstance(v, list) and all(isinstance(x, str) and x in PAYLOAD_KINDS for x in v) for k, v in fields.items())):
        return f"field {PAYLOAD_FIELDS!r} is {_shown(fields)}, not a map of payload keys to lists of {sorted(PAYLOAD_KINDS)}"
    return None


class CollectionManifest:
    """The manifest file of one collection (``path``); all writes are atomic."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / MANIFEST_FILE

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> dict[str, Any] | None:
        """The manifest, or ``None`` when there is no file.

        Raises:
            ManifestError: the file is unreadable, not JSON, not a manifest of a known store
                format version, or a field is missing or of the wrong type (names the file and
                the field; see :func:`manifest_problem`).
        """
        if not self.path.exists():
            return None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ManifestError(
                f"collection manifest {self.path} is unreadable or not JSON ({type(exc).__name__}); restore it from a backup, "
                "or rebuild the collection with `antigravity index CORPUS --reindex`"
            ) from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("student"), dict):
            raise ManifestError(f"{self.path} is not an Antigravity collection manifest; restore it or rebuild with `antigravity index CORPUS --reindex`")
        version = data.get("store_format_version")
        if version != STORE_FORMAT_VERSION:
            raise ManifestError(
                f"{self.path}: store format version {version!r}, this Antigravity reads version {STORE_FORMAT_VERSION}; "
                "use the Antigravity version that wrote it, or rebuild with `antigravity index CORPUS --reindex`"
            )
        problem = manifest_problem(data)
        if problem:
            raise ManifestError(
                f"{self.path} is damaged: {problem}; restore it from a backup, or rebuild with `antigravity index CORPUS --reindex` "
                "(nothing was changed)"
            )
        return data

    def create(self, collection: str, where: str, student: dict[str, Any], documents: int = 0, backend: str | None = None,
               payload_fields: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """Write a new manifest for ``student`` (identity dict) and the store ``backend``
        (``edge``, ``local``, ``server``); returns it. ``payload_fields`` (:data:`PAYLOAD_FIELDS`)
        only for a collection known to be empty — omitted, it is built by a scan when needed."""
        data = {
            "backend": backend,
            "format": _FORMAT,
            "store_format_version": STORE_FORMAT_VERSION,
            "collection": collection,
            "store": where,
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "student": dict(student),
            "documents": int(documents),
        }
        if payload_fields is not None:
            data[PAYLOAD_FIELDS] = payload_fields
        self.write(data)
        return data

    def write(self, data: dict[str, Any]) -> None:
        """Replace the file atomically (temp file, fsync, rename)."""
        from antigravity.core.files import atomic_write_bytes

        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, json.dumps(data, indent=2, sort_keys=True).encode())
