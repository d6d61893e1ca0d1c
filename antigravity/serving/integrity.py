"""Checks run when an engine opens a persistent store: manifest, store, adapter registry
and active version must agree; anything else is refused with a one-line typed error naming
the file and the recovery command — damage is never served as an empty store."""

from __future__ import annotations

import datetime as _dt
import json
import logging
from pathlib import Path
from typing import Any

from antigravity.core.errors import ManifestError, StoreError
from antigravity.core.files import check_permissions, make_private_dir
from antigravity.stores.manifest import describe_student, identity_differences, stored_backend
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
    if backend_of(s) == "edge":
        from antigravity.stores.edge import EdgeStore

        location = s.resolved_store_location if in_memory else str(Path(s.resolved_store_location).expanduser() / "edge")
        # raw gets a graph too: the frozen student (version 0) and query-only versions are served from it
        store = EdgeStore(location, collection=s.store.collection, create=create, m=s.store.m, ef_construct=s.store.ef_construct, hnsw_ef=s.store.hnsw_ef, target_recall=s.store.target_recall, raw_hnsw=True, on_disk=s.store.on_disk,
                          migrate_hint=f" --data-dir {s.data_dir}")
    else:
        store = QdrantStore(
            s.resolved_store_location if not s.store.url else None, url=s.store.url, api_key=s.store.api_key.get_secret_value() if s.store.api_key else None,
            collection=s.store.collection, timeout_s=s.store.timeout_s, create=create,
            create_options={k: getattr(s.store, k) for k in ("shard_number", "replication_factor", "write_consistency_factor")}, on_disk=s.store.on_disk,
        )
    return store, in_memory, warnings + [w for w in store.permission_warnings if w not in warnings]


def backend_of(s: Any) -> str:
    """``server`` (a ``store.url``), else ``store.backend`` (``edge`` or ``local``)."""
    return "server" if s.store.url else s.store.backend


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


def check_student(manifest: Any, identity: dict[str, Any], collection: str, data_dir: str, record: dict[str, Any] | None = None) -> None:
    """Refuse a collection another student built — from the manifest alone, before the store
    is opened, so a refused open touches no store file.

    Raises:
        ManifestError: the identities differ (names both students and the fields).
    """
    record = manifest.read() if record is None else record
    if record is None:
        return
    diffs = identity_differences(record["student"], identity)
    if diffs:
        stored = record["student"]
        dims = f"holds {stored.get('dim')}-d vectors; the student makes {identity.get('dim')}-d: it " if "dim" in diffs else ""
        dtype = f" (for the dtype: student.precision = {stored.get('dtype')!r}; precision 'auto' follows the CPU's bf16 support)" if "dtype" in diffs else ""
        raise ManifestError(
            f"collection {collection!r} {dims}was built by student {describe_student(stored)} ({manifest.path}); the running student is "
            f"{describe_student(identity)} (differs in {', '.join(diffs)}). Use the same student{dtype}, or re-index deliberately with {recovery(data_dir)}"
        )


def precheck(manifest: Any, adapters: Any, encoder: Any, identity: dict[str, Any], collection: str, data_dir: str) -> None:
    """The checks that need no store: the active adapter's student (CheckpointError), then the
    manifest's (ManifestError) — run before the store is opened, so a refused open changes no
    store file (opening a Qdrant Edge shard rewrites its config)."""
    if adapters is not None:
        active = adapters.active()
        if active["version"] and active["version"] in adapters.versions():
            adapters.load(active["version"], student=encoder.name, dim=encoder.dim)
    check_student(manifest, identity, collection, data_dir)


def check_on_open(*, store: Any, manifest: Any, view: Any, versions: Any, encoder: Any, identity: dict[str, Any], where: str, data_dir: str,
                  persist: bool, adopt: bool, counters: Any, backend: str = "local") -> None:
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
    fresh = record is not None and record["documents"] == 0 and store.dim is None  # a crash between manifest and collection
    if record is not None and backend != "server" and stored_backend(record) != backend and not fresh:
        raise ManifestError(
            f"collection {store.collection!r} was written by the {stored_backend(record)!r} store backend ({manifest.path}) but store.backend is "
            f"{backend!r}: migrate it with `antigravity migrate --data-dir {data_dir}` (vectors, payloads, adapters and the active version are kept), "
            f"or set store.backend = {stored_backend(record)!r}"
        )
    exists = store.dim is not None
    n = store.count() if exists else 0
    desc, coll, fix = store.describe(), store.collection, recovery(data_dir)
    if record is None:
        if exists and adopt and store.dim != identity.get("dim"):
            raise ManifestError(
                f"cannot adopt collection {coll!r} ({desc}, {n} documents) for {describe_student(identity)}: it holds {store.dim}-d vectors, "
                f"the student makes {identity.get('dim')}-d, so another student built it; nothing was written. Rebuild with {fix}"
            )
        if exists and adopt:
            manifest.create(coll, where, identity, n, backend=backend)
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
        check_student(manifest, identity, coll, data_dir, record)
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


def migrate_local_to_edge(s: Any, batch: int = 1024) -> tuple[int, Path]:
    """Copy the qdrant-client local-mode collection ``s`` describes into a Qdrant Edge shard
    (every named vector and payload, in batches), then switch the manifest to ``edge`` and
    move the old files aside. Adapters and ``active.json`` are untouched: the served slots are
    copied as they are, so the active version serves the same vectors. Returns
    ``(documents copied, where the old collection was moved)``.

    Crash-safe in order: the copy goes to a temporary folder (removed and redone by a re-run),
    is renamed into place, then the manifest says ``edge``, then the old files move aside; a
    crash at any point leaves a store that either still opens as ``local`` or is migrated.

    Raises:
        StoreError: no local-mode collection there, or the copy does not match the source.
        ManifestError: the collection has no readable manifest.
    """
    import datetime as _dt
    import shutil

    import numpy as np

    from antigravity.serving.checkpoints import registry_for
    from antigravity.stores.edge import EdgeStore
    from antigravity.stores.manifest import CollectionManifest
    from antigravity.stores.qdrant import RAW, SLOTS

    if s.store.url or s.resolved_store_location == ":memory:":
        raise StoreError("migrate works on an embedded store folder (no store.url, not ':memory:')")
    manifest = CollectionManifest(registry_for(s).dir)
    record = manifest.read()
    if record is None:
        raise ManifestError(f"no manifest {manifest.path}: nothing records which student built collection {s.store.collection!r}; run `antigravity adopt` first")
    location = Path(s.resolved_store_location).expanduser()
    target = location / "edge"
    if stored_backend(record) == "edge" and (target / s.store.collection).exists():
        raise StoreError(f"collection {s.store.collection!r} in {location} is already on the edge backend; nothing to migrate")
    src = QdrantStore(str(location), collection=s.store.collection, create=False)
    tmp_dir = target / f".{s.store.collection}.migrating"
    try:
        if src.dim is None:
            raise StoreError(f"no local-mode collection {s.store.collection!r} in {location}")
        shutil.rmtree(tmp_dir, ignore_errors=True)
        dst = EdgeStore(str(tmp_dir), collection=s.store.collection, create=True)
        try:
            dst.ensure_collection(src.dim)
            n = 0
            for ids, mats in src.iter_vectors((RAW, *SLOTS), batch_size=batch):
                payloads = src.retrieve(ids)
                dst.upsert(ids, mats[RAW], [payloads[d] for d in ids])
                for slot in SLOTS:  # a vector a point lacks reads as a zero row: only real ones are copied
                    held = np.flatnonzero(np.abs(mats[slot]).sum(axis=1) > 0)
                    if len(held):
                        dst.set_served([ids[i] for i in held], slot, mats[slot][held])
                n += len(ids)
            if dst.count() != src.count() or n != src.count():
                raise StoreError(f"migration copied {dst.count()} of {src.count()} documents; the local-mode collection is unchanged")
        finally:
            dst.close()
        old_dir = src.collection_dir
    finally:
        src.close()
    final = target / s.store.collection
    shutil.rmtree(final, ignore_errors=True)
    (tmp_dir / s.store.collection).rename(final)
    shutil.rmtree(tmp_dir, ignore_errors=True)
    record["backend"] = "edge"
    manifest.write(record)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    backup = location / f"local-mode-backup-{stamp}"
    backup.mkdir()
    if old_dir is not None and Path(old_dir).exists():
        Path(old_dir).rename(backup / Path(old_dir).name)
    logger.warning("migrated collection %r (%d documents) to Qdrant Edge in %s; the local-mode files are in %s", s.store.collection, n, final, backup)
    return n, backup


def single_shard_layout(s: Any) -> bool:
    """``True`` when the Qdrant Edge collection ``s`` describes is in the single-shard layout of
    earlier versions (``raw``, ``served_a`` and ``served_b`` declared in one shard)."""
    from antigravity.stores.qdrant import SLOTS

    if s.store.url or s.resolved_store_location == ":memory:":
        return False
    cfg = Path(s.resolved_store_location).expanduser() / "edge" / s.store.collection / "edge_config.json"
    try:
        return bool(set(json.loads(cfg.read_text())["vectors"]) & set(SLOTS))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def migrate_edge_single_shard(s: Any, batch: int = 1024) -> tuple[int, Path]:
    """Split a Qdrant Edge collection in the single-shard layout (earlier versions: ``raw`` and
    both slots declared in one shard, which stores every declared vector of every point and moves
    a whole point when one vector changes) into one shard per vector
    (:class:`~antigravity.stores.edge.EdgeStore`). Raw vectors, payloads and payload indexes are
    copied, and each slot vector a point holds; adapters and ``active.json`` are untouched (the
    slots keep their names, so the active version serves the same vectors). Returns
    ``(documents copied, where the old shard was moved)``.

    Crash-safe in order: the copy is built in ``.<collection>.migrating`` (removed and redone by
    a re-run); then the new slot shards are moved into place, the old shard is moved aside and
    the new raw shard takes its name (two renames).

    Raises:
        StoreError: the collection is not in the single-shard layout, or the copy does not
            match the source.
    """
    import datetime as _dt
    import shutil

    import numpy as np
    import qdrant_edge as qe

    from antigravity.stores.edge import SHARDS, EdgeStore
    from antigravity.stores.qdrant import RAW, SLOTS

    if not single_shard_layout(s):
        raise StoreError(f"collection {s.store.collection!r} in {s.resolved_store_location} is not in the single-shard Qdrant Edge layout; nothing to migrate")
    location = Path(s.resolved_store_location).expanduser() / "edge"
    old = location / s.store.collection
    tmp_dir = location / f".{s.store.collection}.migrating"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    try:
        src = qe.EdgeShard.load(str(old))
    except Exception as exc:  # noqa: BLE001 - qdrant_edge raises plain Exception
        raise StoreError(f"cannot open {old} to migrate it: {type(exc).__name__}: {exc}".replace("\n", " ")) from exc
    try:
        dim = int(json.loads((old / "edge_config.json").read_text())["vectors"][RAW]["size"])
        dst = EdgeStore(str(tmp_dir), collection=s.store.collection, create=True, m=s.store.m, ef_construct=s.store.ef_construct, raw_hnsw=True, on_disk=s.store.on_disk)
        try:
            dst.ensure_collection(dim)
            for field, info in src.info().payload_schema.items():
                if not field.startswith("_ag_"):
                    dst.create_payload_index(field, str(info.data_type).rsplit(".", 1)[-1].lower())
            n, offset = 0, None
            while True:
                recs, offset = src.scroll(qe.ScrollRequest(offset=offset, limit=batch, with_payload=True, with_vector=True))
                if recs:
                    ids = [str(r.payload["doc_id"]) for r in recs]
                    payloads = [{k: v for k, v in r.payload.items() if k != "doc_id"} for r in recs]
                    dst.upsert(ids, np.array([r.vector[RAW] for r in recs], dtype=np.float32), payloads)
                    for slot in SLOTS:
                        have = [(d, r.vector[slot]) for d, r in zip(ids, recs) if r.vector.get(slot) is not None]
                        if have:
                            dst.set_served([d for d, _ in have], slot, np.array([v for _, v in have], dtype=np.float32))
                    n += len(recs)
                if offset is None:
                    break
            total = int(src.count(qe.CountRequest(exact=True)))
            if dst.count() != total or n != total:
                raise StoreError(f"migration copied {dst.count()} of {total} documents; the single-shard collection is unchanged")
        finally:
            dst.close()
    finally:
        src.close()
    for name in SHARDS[1:]:
        target = location / f"{s.store.collection}.{name}"
        shutil.rmtree(target, ignore_errors=True)
        if (tmp_dir / target.name).exists():
            (tmp_dir / target.name).rename(target)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    backup = location.parent / f"edge-single-shard-backup-{stamp}"
    backup.mkdir()
    old.rename(backup / old.name)
    (tmp_dir / s.store.collection).rename(old)
    shutil.rmtree(tmp_dir, ignore_errors=True)
    logger.warning("migrated collection %r (%d documents) to one Qdrant Edge shard per vector in %s; the single-shard files are in %s", s.store.collection, n, location, backup)
    return n, backup
