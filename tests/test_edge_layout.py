"""Qdrant Edge layout: one shard per vector name (raw + payloads, and each served slot), the
journal that keeps a multi-shard write whole across a crash, and the migration of the
single-shard layout of earlier versions."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

qe = pytest.importorskip("qdrant_edge")

from antigravity.core.errors import StoreError  # noqa: E402
from antigravity.stores.base import RAW, SLOTS  # noqa: E402
from antigravity.stores.edge import EdgeStore  # noqa: E402
from antigravity.stores.shared import point_id  # noqa: E402
from tests.test_data_ops import WORDS, _adapter, _docs, _engine  # noqa: E402

D = 8


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, D)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _store(tmp_path) -> tuple[EdgeStore, list[str], np.ndarray]:
    s = EdgeStore(str(tmp_path), collection="c")
    s.ensure_collection(D)
    s.create_payload_index("lang", "keyword")
    ids = [f"d{i}" for i in range(30)]
    raw = _unit(np.random.default_rng(0), 30)
    s.upsert(ids, raw, [{"lang": ["en", "de"][i % 2]} for i in range(30)])
    return s, ids, raw


def _vector_storages(folder) -> set[str]:
    return {p.name for p in folder.rglob("vector_storage-*")}


def test_each_vector_name_has_its_own_shard(tmp_path):
    s, ids, raw = _store(tmp_path)
    try:
        assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no slot shard before a slot is written
        assert _vector_storages(tmp_path / "c") == {"vector_storage-raw"}
        moved = _unit(np.random.default_rng(1), 30)
        s.set_served(ids, "served_a", moved)
        assert json.loads((tmp_path / "c.served_a" / "edge_config.json").read_text())["vectors"].keys() == {"served_a"}
        assert _vector_storages(tmp_path / "c") == {"vector_storage-raw"}  # the raw shard stores no slot vector
        hits = s.search(moved[:1], using="served_a", k=3)[0]
        assert hits[0][0] == "d0" and hits[0][2] == {"lang": "en"}  # payload copied into the slot shard
        only_de = s.search(moved[:1], using="served_a", k=30, filter={"lang": "de"})[0]
        assert len(only_de) == 15 and {h[2]["lang"] for h in only_de} == {"de"}  # the payload index was copied too
        got = s.retrieve(["d0"], with_vectors=True)["d0"]["vectors"]
        assert set(got) == {RAW, "served_a"} and np.allclose(got["served_a"], moved[0], atol=1e-6)
        s.clear_served("served_a")
        assert not (tmp_path / "c.served_a").exists()
        assert s.search(moved[:1], using="served_a", k=3) == [[]] and set(s.retrieve(["d0"], with_vectors=True)["d0"]["vectors"]) == {RAW}
        assert s.count() == 30
    finally:
        s.close()


def test_upsert_without_a_slot_removes_the_document_from_that_slot_shard(tmp_path):
    s, ids, raw = _store(tmp_path)
    try:
        s.set_served(ids, "served_b", raw)
        s.upsert(["d3"], raw[3:4], [{"lang": "fr"}])  # replaced without served vectors
        assert "served_b" not in s.retrieve(["d3"], with_vectors=True)["d3"]["vectors"]
        assert "d3" not in [h[0] for h in s.search(raw[3:4], using="served_b", k=30)[0]]
        s.delete(["d4"])
        assert "d4" not in [h[0] for h in s.search(raw[4:5], using="served_b", k=30)[0]] and s.count() == 29
    finally:
        s.close()


class _CrashOnUpdate:
    """A shard whose ``update`` is cut short, as a kill -9 would cut the write: the rest of the
    operation never runs."""

    def __init__(self, shard) -> None:
        self._shard = shard

    def update(self, op) -> None:
        raise KeyboardInterrupt("killed")

    def __getattr__(self, name):
        return getattr(self._shard, name)


@pytest.mark.parametrize("op", ["upsert", "delete"])
def test_a_multi_shard_write_cut_short_is_completed_on_open(tmp_path, op):
    s, ids, raw = _store(tmp_path)
    s.set_served(ids, "served_a", raw)
    new_raw, new_a = _unit(np.random.default_rng(2), 2), _unit(np.random.default_rng(3), 2)
    s._handle.shards["served_a"] = _CrashOnUpdate(s._handle.shards["served_a"])
    with pytest.raises(KeyboardInterrupt):
        if op == "upsert":
            s.upsert(["d0", "new"], new_raw, [{"lang": "xx"}, {"lang": "yy"}], {"served_a": new_a})
        else:
            s.delete(["d0", "d1"])
    assert (tmp_path / ".c.journal.npz").exists()
    s._handle.shards["served_a"] = s._handle.shards["served_a"]._shard
    s.close()
    s = EdgeStore(str(tmp_path), collection="c")
    try:
        assert not (tmp_path / ".c.journal.npz").exists()
        if op == "upsert":
            got = s.retrieve(["d0", "new"], with_vectors=True)
            assert np.allclose(got["new"]["vectors"]["served_a"], new_a[1], atol=1e-6) and got["new"]["payload"] == {"lang": "yy"}
            assert np.allclose(got["d0"]["vectors"]["served_a"], new_a[0], atol=1e-6) and np.allclose(got["d0"]["vectors"][RAW], new_raw[0], atol=1e-6)
            assert s.search(new_a[1:2], using="served_a", k=1)[0][0][:1] == ("new",) and s.count() == 31
        else:
            assert s.count() == 28 and not s.retrieve(["d0", "d1"])
            assert not {"d0", "d1"} & {h[0] for h in s.search(raw[:2], using="served_a", k=30)[1]}
    finally:
        s.close()


def test_a_damaged_journal_is_refused_and_changes_nothing(tmp_path):
    s, ids, raw = _store(tmp_path)
    s.set_served(ids, "served_a", raw)
    s.close()
    (tmp_path / ".c.journal.npz").write_bytes(b"not a journal")
    (tmp_path / ".c.journal.npz.tmp").write_bytes(b"half written")  # never renamed into place: the write had not started
    for _ in range(2):
        with pytest.raises(StoreError, match=r"cannot replay .*\.c\.journal\.npz") as exc:
            EdgeStore(str(tmp_path), collection="c")
        assert "\n" not in str(exc.value)
    assert (tmp_path / ".c.journal.npz").read_bytes() == b"not a journal"
    (tmp_path / ".c.journal.npz").unlink()
    s = EdgeStore(str(tmp_path), collection="c")
    try:
        assert s.count() == 30 and not (tmp_path / ".c.journal.npz.tmp").exists()
    finally:
        s.close()


def _to_single_shard(folder, collection: str = "antigravity") -> None:
    """Rewrite a collection into the single-shard layout earlier versions wrote (raw and both
    slots declared in one shard), from its per-vector shards."""
    src = EdgeStore(str(folder), collection=collection, raw_hnsw=True)
    dim = src.dim
    batches = list(src.iter_vectors((RAW, *SLOTS), batch_size=1000))
    payloads = dict(src.iter_payloads())
    src.close()
    for name in ("", *(f".{slot}" for slot in SLOTS)):
        shutil.rmtree(folder / f"{collection}{name}", ignore_errors=True)
    vec = qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)
    shard = qe.EdgeShard.create(str(folder / collection), qe.EdgeConfig(vectors={RAW: vec, **{s: vec for s in SLOTS}}))
    shard.update(qe.UpdateOperation.create_field_index("_ag_empty", qe.PayloadSchemaType.Bool))
    for ids, mats in batches:
        pts = []
        for i, d in enumerate(ids):
            vecs = {RAW: mats[RAW][i].tolist(), **{s: mats[s][i].tolist() for s in SLOTS if np.abs(mats[s][i]).sum() > 0}}
            pts.append(qe.Point(point_id(d), vecs, {**payloads[d], "doc_id": d}))
        shard.update(qe.UpdateOperation.upsert_points(pts))
    shard.flush()
    shard.close()


def test_single_shard_layout_is_refused_then_migrated(tmp_path):
    """A store written by earlier versions (all vectors in one shard) is refused with the
    command that fixes it, never read as something else; `antigravity migrate` splits it and
    the active version serves the same results."""
    from antigravity.serving.integrity import migrate_edge_single_shard
    from antigravity.settings import Settings

    loc = str(tmp_path / "qdrant")
    e = _engine(tmp_path, store__location=loc)
    e.ingest(_docs())
    e.activate(_adapter(32, 5), _adapter(32, 6), version=1)
    ref = [[(h.doc_id, round(h.score, 5)) for h in hs] for hs in e.search_batch(WORDS, k=10, record=False)]
    e.close()
    _to_single_shard(tmp_path / "qdrant" / "edge")
    for _ in range(2):
        with pytest.raises(StoreError, match=r"single-shard layout .*antigravity migrate --data-dir") as exc:
            _engine(tmp_path, store__location=loc)
        assert "\n" not in str(exc.value)
    n, backup = migrate_edge_single_shard(Settings.load(data_dir=str(tmp_path), store__location=loc))
    assert n == 60 and (backup / "antigravity" / "edge_config.json").exists()
    new = _engine(tmp_path, store__location=loc)
    try:
        assert new.count() == 60 and new.served_version.version == 1
        assert [[(h.doc_id, round(h.score, 5)) for h in hs] for hs in new.search_batch(WORDS, k=10, record=False)] == ref
    finally:
        new.close()
    with pytest.raises(StoreError, match="not in the single-shard"):
        migrate_edge_single_shard(Settings.load(data_dir=str(tmp_path), store__location=loc))


def test_optimize_rebuilds_only_the_shards_that_changed(tmp_path, monkeypatch):
    built: list[str] = []
    real = EdgeStore._optimize_shard
    monkeypatch.setattr(EdgeStore, "_optimize_shard", lambda self, name: (built.append(name), real(self, name)))
    s = EdgeStore(str(tmp_path), collection="c", raw_hnsw=True, indexing_threshold=1)
    s.swap_grace_s = 0.0
    s.ensure_collection(D)
    ids = [f"d{i}" for i in range(50)]
    s.upsert(ids, _unit(np.random.default_rng(0), 50), [{}] * 50)
    s.optimize()
    s.set_served(ids, "served_b", _unit(np.random.default_rng(1), 50))
    s.optimize()
    s.optimize()
    assert built == [RAW, "served_b"]
    s.close()
    s = EdgeStore(str(tmp_path), collection="c", raw_hnsw=True, indexing_threshold=1)
    s.swap_grace_s = 0.0
    try:
        s.optimize()  # reopened, every point already in a graph: nothing to build
        assert built == [RAW, "served_b"] and s.indexed_vectors_count() == 100
        s.delete(["d0"])
        s.optimize()
        assert built == [RAW, "served_b", RAW, "served_b"]
    finally:
        s.close()


@pytest.mark.parametrize("damage", ["deleted", "emptied"])
def test_a_lost_slot_shard_is_rebuilt_from_raw_not_served_empty(tmp_path, damage):
    """The slot shards hold derived data (``adapter(raw)``): when the served one is gone or
    empty, the engine re-materialises it from the raw shard on open (counted), and serves the
    same results as before — never an empty or partial slot."""
    loc = str(tmp_path / "qdrant")
    e = _engine(tmp_path, store__location=loc)
    e.ingest(_docs())
    e.activate(_adapter(32, 5), None, version=1)
    slot = e.served_version.slot
    ref = [[(h.doc_id, round(h.score, 5)) for h in hs] for hs in e.search_batch(WORDS, k=10, record=False)]
    e.close()
    folder = tmp_path / "qdrant" / "edge" / f"antigravity.{slot}"
    shutil.rmtree(folder)
    if damage == "emptied":  # the shard exists but holds no point
        s = EdgeStore(str(tmp_path / "qdrant" / "edge"), collection="antigravity", raw_hnsw=True)
        s.set_served(["d0"], slot, np.ones((1, 32), dtype=np.float32))
        s.delete(["no-such-id"])
        s._handle.shards[slot].update(qe.UpdateOperation.delete_points([point_id("d0")]))
        s.close()
    e = _engine(tmp_path, store__location=loc)
    try:
        assert e.stats()["slots_rematerialised"] == 1 and e.served_version.slot == slot
        assert [[(h.doc_id, round(h.score, 5)) for h in hs] for hs in e.search_batch(WORDS, k=10, record=False)] == ref
    finally:
        e.close()


def test_a_slot_shard_older_than_the_raw_one_is_rebuilt_not_served_without_the_newest(tmp_path):
    """A slot shard restored from an older backup than the raw shard lacks the documents
    ingested since: the open compares the slot's point count with the raw count (the sampled
    check reads only the first 256 points) and re-materialises it, counted."""
    loc = str(tmp_path / "qdrant")
    e = _engine(tmp_path, store__location=loc)
    e.ingest(_docs(400))
    e.activate(_adapter(32, 5), None, version=1)
    slot = e.served_version.slot
    e.close()
    shard = tmp_path / "qdrant" / "edge" / f"antigravity.{slot}"
    shutil.copytree(shard, tmp_path / "backup")
    cut = sorted(point_id(f"d{i}") for i in range(400))[300]  # beyond the first 256 points the sample reads
    new = [f"n{i}" for i in range(300) if point_id(f"n{i}") > cut][:3]
    e = _engine(tmp_path, store__location=loc)
    e.ingest([{"_id": d, "text": f"zebra quokka {d}"} for d in new])
    want = [h.doc_id for h in e.search(f"zebra quokka {new[1]}", k=3, record=False)]
    e.close()
    shutil.rmtree(shard)
    shutil.copytree(tmp_path / "backup", shard)  # the stale slot: 400 of 403 documents
    e = _engine(tmp_path, store__location=loc)
    try:
        assert e.stats()["slots_rematerialised"] == 1 and e.store.count_vectors(slot) == e.count() == 403
        assert [h.doc_id for h in e.search(f"zebra quokka {new[1]}", k=3, record=False)] == want and new[1] in want
    finally:
        e.close()


def _indexed_store(tmp_path, **kw) -> EdgeStore:
    """2,000 random 32-d vectors with a deliberately weak graph (m 4, ef_construct 8), indexed
    and always searched through it (full_scan_threshold 0)."""
    s = EdgeStore(str(tmp_path), collection="c", raw_hnsw=True, m=4, ef_construct=8, indexing_threshold=1, full_scan_threshold=0, **kw)
    s.swap_grace_s = 0.0
    s.ensure_collection(32)
    x = np.random.default_rng(0).standard_normal((2000, 32)).astype(np.float32)
    s.upsert([f"d{i}" for i in range(2000)], x, [{"i": i} for i in range(2000)])
    s.optimize()
    return s


def test_auto_hnsw_ef_is_measured_after_optimize_and_kept(tmp_path):
    from antigravity.stores.edge import AUTO_EF_FALLBACK, EF_CANDIDATES

    s = _indexed_store(tmp_path, hnsw_ef="auto", target_recall=0.99)
    try:
        rec = s.calibration[RAW]
        sweep = {int(e): r for e, r in rec["sweep"].items()}
        chosen = rec["hnsw_ef"]
        assert rec["sample"] == 100 and rec["points"] == 2000 and chosen == s.ef_for(RAW)
        got = s.retrieve([f"d{i}" for i in range(2000)], with_vectors=True)  # the held-out points were written back, whole
        assert s.count() == 2000 and len(got) == 2000 and all(got[f"d{i}"]["payload"] == {"i": i} and RAW in got[f"d{i}"]["vectors"] for i in range(2000))
        assert chosen == next((e for e in sorted(sweep) if sweep[e] >= 0.99), max(sweep))  # the smallest that reaches the target (else the largest tried)
        assert all(r < 0.99 for e, r in sweep.items() if e < chosen) and (sweep[chosen] >= 0.99 or chosen == EF_CANDIDATES[-1])
        assert chosen > EF_CANDIDATES[0]  # the weak graph needs more than the smallest beam
        # what it measured holds for new queries: recall of searches at the chosen beam against exact
        q = np.random.default_rng(1).standard_normal((50, 32)).astype(np.float32)
        got = s.search(q, RAW, 10)
        assert s.ef_for("served_a") == AUTO_EF_FALLBACK  # never calibrated
        s.hnsw_ef = 100_000  # a beam larger than the collection: exhaustive
        truth = s.search(q, RAW, 10)
        assert np.mean([len({h[0] for h in a} & {h[0] for h in b}) / 10 for a, b in zip(got, truth)]) >= 0.95
    finally:
        s.close()
    s = EdgeStore(str(tmp_path), collection="c", raw_hnsw=True, hnsw_ef="auto")
    try:
        assert s.ef_for(RAW) == chosen  # kept beside the shard, read back on open
    finally:
        s.close()
    (tmp_path / ".c.search.json").write_text("{broken")
    s = EdgeStore(str(tmp_path), collection="c", raw_hnsw=True, hnsw_ef="auto")
    try:
        assert s.ef_for(RAW) == AUTO_EF_FALLBACK  # an unreadable record is the documented fallback, not an error
    finally:
        s.close()


def test_fixed_hnsw_ef_is_not_calibrated_and_unindexed_shards_are_skipped(tmp_path):
    s = _indexed_store(tmp_path, hnsw_ef=64)
    try:
        assert s.calibration == {} and s.ef_for(RAW) == 64 and not (tmp_path / ".c.search.json").exists()
    finally:
        s.close()
    s = EdgeStore(str(tmp_path / "small"), collection="c", hnsw_ef="auto")  # raw without a graph: searched exactly
    try:
        s.ensure_collection(D)
        s.upsert([f"d{i}" for i in range(20)], _unit(np.random.default_rng(0), 20), [{}] * 20)
        s.optimize()
        assert s.calibration == {} and s.ef_for(RAW) == 256
    finally:
        s.close()


@pytest.mark.parametrize("stale", ["slot_has_a_deleted_document", "raw_restored_older_than_slot"])
def test_a_rebuilt_slot_never_serves_a_document_the_raw_shard_no_longer_holds(tmp_path, stale):
    """The slot and raw shards restored from backups of different ages: the slot is cleared
    before it is re-materialised, so a document deleted since the slot's backup (or ingested
    after the raw shard's) is never searchable while ``get`` and ``delete`` cannot see it."""
    loc = str(tmp_path / "qdrant")
    edge = tmp_path / "qdrant" / "edge"
    e = _engine(tmp_path, store__location=loc)
    e.ingest(_docs(20) + ([{"_id": "gone", "text": "zebra giraffe savanna"}] if stale == "slot_has_a_deleted_document" else []))
    e.activate(_adapter(32, 5), None, version=1)
    slot = e.served_version.slot
    e.close()
    backup = "antigravity" if stale == "raw_restored_older_than_slot" else f"antigravity.{slot}"  # the raw shard's folder, or the slot's
    shutil.copytree(edge / backup, tmp_path / "backup")
    e = _engine(tmp_path, store__location=loc)
    if stale == "slot_has_a_deleted_document":
        assert e.delete(["gone"]) == 1
    else:  # one in, one out: the count the manifest records does not change
        e.ingest([{"_id": "gone", "text": "zebra giraffe savanna"}])
        assert e.delete(["d5"]) == 1
    e.close()
    shutil.rmtree(edge / backup)
    shutil.copytree(tmp_path / "backup", edge / backup)
    e = _engine(tmp_path, store__location=loc)
    try:
        assert e.stats()["slots_rematerialised"] == 1 and e.get("gone") is None
        assert e.store.count_vectors(slot) == e.count() == 20 and e.get("d5" if stale == "raw_restored_older_than_slot" else "d4") is not None
        assert "gone" not in [h.doc_id for h in e.search("zebra giraffe savanna", k=5, record=False)]
    finally:
        e.close()
