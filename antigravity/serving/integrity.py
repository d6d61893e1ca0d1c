"""Checks run when an engine opens a persistent store: manifest, store, adapter registry
and active version must agree; anything else is refused with a one-line typed error naming
the file and the recovery command — damage is never served as an empty store."""

from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path
from typing import Any

from antigravity.core.errors import ManifestError, StoreError
from antigravity.core.files import check_permissions, make_private_dir
from antigravity.stores.manifest import describe_student, identity_differences
from antigravity.stores.qdrant import QdrantStore

logger = logging.getLogger("antigravity.engine")


def open_store(s: Any, *, create: bool) -> tuple[QdrantStore, bool, list[str]]:
    """Open the store ``s.store`` describes: ``(store, in_memory, permission warnings)``. A
    persistent data folder is created private (0700) unless ``create=False``.

    Raises:
        StoreError: the data folder is missing with ``create=False``, or the store is
            unreachable, locked or missing (names it; credentials masked).
    """
    in_memory = not s.store.url and s.resolved_store_location == ":memory:"
    data_dir = Path(s.data_dir).expanduser()
    warnings: list[str] = []
    if not in_memory:
        if not data_dir.is_dir():
            if not create:
                raise StoreError(f"data folder {str(data_dir)!r} does not exist (mistyped --data-dir?); nothing was created")
            make_private_dir(data_dir)
        warnings = check_permissions(data_dir)
    store = QdrantStore(
        s.resolved_store_location if not s.store.url else None, url=s.store.url, api_key=s.store.api_key.get_secret_value() if s.store.api_key else None,
        collection=s.store.collection, timeout_s=s.store.timeout_s, create=create,
        create_options={k: getattr(s.store, k) for k in ("shard_number", "replication_factor", "write_consistency_factor")},
    )
    return store, in_memory, warnings + [w for w in store.permission_warnings if w not in warnings]


def recovery(data_dir: str) -> str:
    """The command that rebuilds a collection deliberately."""
    return f"`antigravity index CORPUS --data-dir {data_dir} --reindex` (API: reindex=True)"


def drop_for_reindex(store: Any, view: Any) -> None:
    """``reindex=True``: drop the collection; move its adapters and manifest aside
    (``<dir>.replaced-<UTC time>``)."""
    store.drop_collection()
    if view.dir.exists():
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        aside = view.dir.with_name(f"{view.dir.name}.replaced-{stamp}")
        view.dir.rename(aside)
        logger.warning("re-index: collection %r dropped; its adapters and manifest were moved to %s", store.collection, aside)


def check_on_open(*, store: Any, manifest: Any, view: Any, versions: Any, encoder: Any, identity: dict[str, Any], where: str, data_dir: str,
                  persist: bool, adopt: bool, counters: Any) -> None:
    """Cross-check manifest, store, adapter registry and active version; restore the active
    adapter into ``versions``. With ``adopt``, write a manifest for a collection that has none.

    Raises:
        ManifestError: another student built the collection, or store and records disagree.
        CheckpointError: the active adapter is missing, damaged or made for another student.
    """
    stored_versions = view.versions()
    active = view.active()  # CheckpointError if active.json is malformed
    ckpt = versions.load_active(active, student=encoder.name, dim=encoder.dim) if persist else None
    record = manifest.read()
    exists = store.dim is not None
    n = store.count() if exists else 0
    desc, coll, fix = store.describe(), store.collection, recovery(data_dir)
    if record is None:
        if exists and adopt:
            manifest.create(coll, where, identity, n)
            logger.warning("adopted collection %r (%d documents) for student %s", coll, n, describe_student(identity))
            counters.count("manifest_adopted")
        elif exists:
            raise ManifestError(
                f"collection {coll!r} ({desc}, {n} documents) has no manifest {manifest.path}: nothing records which student built it "
                f"(made before manifests, or the file was deleted). If {describe_student(identity)} built it, adopt it with "
                f"`antigravity adopt --data-dir {data_dir}` (API: adopt=True); otherwise rebuild with {fix}"
            )
        elif stored_versions or active["version"]:
            raise ManifestError(
                f"adapter checkpoints {stored_versions} exist in {view.dir} but there is no collection {coll!r} ({desc}) and no manifest: "
                f"the store was deleted or replaced. Restore the store folder from a backup, or rebuild with {fix}"
            )
    else:
        diffs = identity_differences(record["student"], identity)
        if diffs:
            stored = record["student"]
            dims = f"holds {stored.get('dim')}-d vectors; the student makes {identity.get('dim')}-d: it " if "dim" in diffs else ""
            dtype = f" (for the dtype: student.precision = {stored.get('dtype')!r}; precision 'auto' follows the CPU's bf16 support)" if "dtype" in diffs else ""
            raise ManifestError(
                f"collection {coll!r} {dims}was built by student {describe_student(stored)} ({manifest.path}); the running student is "
                f"{describe_student(identity)} (differs in {', '.join(diffs)}). Use the same student{dtype}, or re-index deliberately with {fix}"
            )
        if not exists and (record["documents"] > 0 or stored_versions):
            files = f"the store's {store.meta_file} or {store.collection_dir}" if store.meta_file else "the collection"
            raise ManifestError(
                f"{manifest.path} records {record['documents']} documents in collection {coll!r} but the store has no such collection: "
                f"{files} was deleted or replaced. Restore it from a backup, or rebuild with {fix}"
            )
        if exists and n < record["documents"]:
            raise ManifestError(
                f"{desc} holds {n} documents but {manifest.path} records at least {record['documents']}: the storage file was "
                f"truncated, replaced or partly deleted. Restore it from a backup, or rebuild with {fix}"
            )
    if exists and n == 0 and stored_versions:
        raise ManifestError(
            f"{desc} holds no documents but adapter checkpoints {stored_versions} exist in {view.dir}: the storage was emptied or replaced. "
            f"Restore it from a backup, or rebuild with {fix}"
        )
    if ckpt is not None:
        versions.restore(active, ckpt)
