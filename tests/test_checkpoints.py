"""Versioned adapters: safetensors + JSON per collection, restore on restart, rollback, CLI,
mismatch and corruption refused; live settings reload."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from antigravity import AntigravityEngine
from antigravity.serving.checkpoints import AdapterRegistry
from antigravity.core.errors import AdaptationError, CheckpointError, ConfigurationError
from antigravity.stores.qdrant import RAW, SLOTS
from tests.conftest import HashEncoder
from tests.test_distillation import SpyTeacher
from tests.test_sedimentation import _corpus, _queries

PROBES = ["fever aspirin", "immune virus cell", "dog walk brain", "tumor drug trial"]


def _open(tmp_path, encoder=None, teacher=None, **kw):
    kw.setdefault("adaptation__rank", 8)
    kw.setdefault("adaptation__epochs", 5)
    kw.setdefault("gate__enabled", False)
    kw.setdefault("adaptation__signal", "anisotropy")  # moves both sides: served from a slot
    return AntigravityEngine(
        data_dir=str(tmp_path), store__location=str(tmp_path / "qdrant"), encoder=encoder or HashEncoder(32), teacher=teacher, **kw
    )


def _results(e):
    """Every document's score for each probe (exact ranking up to ties, which Qdrant may order
    either way)."""
    return [{h.doc_id: round(h.score, 5) for h in e.search(p, k=1000, record=False)} for p in PROBES]


def _two_versions(tmp_path, **kw):
    e = _open(tmp_path, **kw)
    e.ingest(_corpus())
    e.search_batch(_queries())
    assert e.run_sedimentation_cycle().promoted
    e.search_batch(_queries(seed=7))
    assert e.run_sedimentation_cycle().promoted
    return e


def test_promoted_versions_saved_with_metadata(tmp_path):
    e = _two_versions(tmp_path)
    reg = AdapterRegistry(tmp_path, "antigravity")
    assert reg.versions() == [1, 2]
    meta = reg.read_meta(2)
    for key in ("version", "parent", "mode", "student", "teacher", "settings_hash", "metrics", "created_at", "weights_sha256"):
        assert key in meta, key
    assert meta["parent"] == 1 and meta["mode"] == "baseline" and meta["teacher"] is None
    assert meta["student"] == {"name": "hash-encoder", "dim": 32}
    assert reg.read_meta(1)["metrics"]["n_signals"] == 60 and reg.read_meta(1)["parent"] == 0
    assert reg.active() == {"version": 2, "slot": e.served_version.slot, "history": [0, 1, 2]}
    # safetensors, not pickle: an 8-byte little-endian header length then a JSON header
    blob = reg.weights_path(2).read_bytes()
    n = int.from_bytes(blob[:8], "little")
    assert json.loads(blob[8 : 8 + n])["__metadata__"]["format"] == "antigravity-adapter"
    e.close()


@pytest.mark.parametrize("signal", ["anisotropy", "modality_gap"])  # doc+query side / query side only
def test_restart_restores_active_version_and_same_results(tmp_path, signal):
    e = _two_versions(tmp_path, adaptation__signal=signal)
    before, version, slot = _results(e), e.served_version.version, e.served_version.slot
    assert (slot in SLOTS) == (signal == "anisotropy")
    e.close()
    e2 = _open(tmp_path, adaptation__signal=signal)
    assert e2.served_version.version == version == 2 and e2.served_version.slot == slot
    assert _results(e2) == before
    assert e2.stats()["adapter_versions"] == [0, 1, 2]
    # ingest after the restart lands in the served slot under the restored adapter
    e2.ingest([("new", "fever aspirin dose trial")])
    assert e2.search("fever aspirin dose trial", k=1, record=False)[0].doc_id == "new"
    e2.close()


def test_rollback_after_restart_loads_from_disk(tmp_path):
    e = _two_versions(tmp_path)
    e.rollback(1)
    v1_results = _results(e)
    e.rollback(0)
    frozen = _results(e)
    e.rollback(2)
    e.close()
    e2 = _open(tmp_path)
    assert e2.served_version.version == 2
    e2.rollback()  # the version before 2 in the persisted history
    assert e2.served_version.version == 0 and _results(e2) == frozen
    e2.rollback(1)
    assert _results(e2) == v1_results
    with pytest.raises(AdaptationError, match="unknown adapter version 9"):
        e2.rollback(9)
    e2.close()
    assert AdapterRegistry(tmp_path, "antigravity").active()["version"] == 1


def test_refused_rollback_changes_neither_the_served_version_nor_the_history(tmp_path):
    e = _two_versions(tmp_path)
    e.close()
    e2 = _open(tmp_path)  # version 1 now only on disk
    served = _results(e2)
    w = AdapterRegistry(tmp_path, "antigravity").weights_path(1)
    blob = w.read_bytes()
    w.write_bytes(blob[:-1] + bytes([blob[-1] ^ 0xFF]))  # one byte flipped: sha256 mismatch
    for _ in range(2):  # refused twice alike: the first refusal must not step the history past 1
        with pytest.raises(CheckpointError):
            e2.rollback()
        assert e2.served_version.version == 2 and _results(e2) == served
        assert e2.versions._history == [0, 1, 2]
    e2.close()
    assert AdapterRegistry(tmp_path, "antigravity").active()["history"] == [0, 1, 2]


def test_new_versions_numbered_above_disk(tmp_path):
    e = _two_versions(tmp_path)
    e.close()
    e2 = _open(tmp_path)
    e2.search_batch(_queries(seed=3))
    rep = e2.run_sedimentation_cycle()
    assert rep.promoted and rep.version == 3
    assert AdapterRegistry(tmp_path, "antigravity").read_meta(3)["parent"] == 2
    e2.close()


def test_collections_are_separate(tmp_path):
    e = _two_versions(tmp_path)
    e.close()
    other = _open(tmp_path, store__collection="other")
    assert other.served_version.version == 0 and other.stats()["adapter_versions"] == [0]
    other.close()


def test_checkpoint_for_another_student_refused(tmp_path):
    _two_versions(tmp_path).close()
    with pytest.raises(CheckpointError, match="hash-encoder.*32-d.*running student is 'other-encoder'"):
        _open(tmp_path, encoder=HashEncoder(32, name="other-encoder"))
    with pytest.raises(CheckpointError, match="16-d"):
        _open(tmp_path, encoder=HashEncoder(16))
    e = _open(tmp_path)  # the store was not damaged by the refused opens
    assert e.count() == 120 and e.served_version.version == 2
    e.close()


@pytest.mark.parametrize("damage", ["weights_flipped", "weights_truncated", "meta_half_written", "active_half_written", "weights_missing"])
def test_corrupt_checkpoint_refused(tmp_path, damage):
    _two_versions(tmp_path).close()
    reg = AdapterRegistry(tmp_path, "antigravity")
    if damage == "weights_flipped":
        b = bytearray(reg.weights_path(2).read_bytes())
        b[-1] ^= 0xFF
        reg.weights_path(2).write_bytes(bytes(b))
    elif damage == "weights_truncated":
        reg.weights_path(2).write_bytes(reg.weights_path(2).read_bytes()[:100])
    elif damage == "meta_half_written":
        reg.meta_path(2).write_text(reg.meta_path(2).read_text()[:50])
    elif damage == "active_half_written":
        reg.active_path.write_text('{"version": 2, "sl')
    else:
        reg.weights_path(2).unlink()
    with pytest.raises(CheckpointError):
        _open(tmp_path)


@pytest.mark.parametrize("field,value", [("student", "hash-encoder"), ("student", {"name": "hash-encoder"}), ("doc_adapter", {"rank": 8}),
                                         ("doc_adapter", {"dim": "wide", "rank": 8}), ("doc_adapter", 5)])
def test_checkpoint_metadata_with_a_wrong_field_is_a_checkpoint_error_naming_the_file(tmp_path, field, value):
    _two_versions(tmp_path).close()
    reg = AdapterRegistry(tmp_path, "antigravity")
    meta = json.loads(reg.meta_path(2).read_text())
    meta[field] = value
    reg.meta_path(2).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"v000002.json|adapter version 2"):
        _open(tmp_path)


def test_in_memory_store_does_not_persist(tmp_path):
    e = AntigravityEngine(data_dir=str(tmp_path), store__location=":memory:", encoder=HashEncoder(32), adaptation__rank=8, adaptation__epochs=5, gate__enabled=False)
    e.ingest(_corpus())
    e.search_batch(_queries())
    assert e.run_sedimentation_cycle().promoted
    assert e.adapters is None and not (tmp_path / "adapters").exists()
    e.close()


def test_stale_slot_rematerialised_on_restart(tmp_path):
    e = _two_versions(tmp_path)
    before, slot = _results(e), e.served_version.slot
    ids, raw = e.raw_matrix()
    e.store.set_served(ids, slot, raw)  # simulate a store restored from an older backup
    e.close()
    e2 = _open(tmp_path)
    assert e2.stats()["slots_rematerialised"] == 1 and _results(e2) == before
    e2.close()


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-c", "from antigravity.cli import main; main()", *args], capture_output=True, text=True, timeout=300
    )


def test_adapters_cli_list_show_rollback(tmp_path):
    _two_versions(tmp_path).close()
    r = _cli("adapters", "list", "--data-dir", str(tmp_path), "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["version"] for x in rows] == [0, 1, 2] and [x["active"] for x in rows] == [False, False, True]
    r = _cli("adapters", "show", "1", "--data-dir", str(tmp_path))
    assert r.returncode == 0 and json.loads(r.stdout)["parent"] == 0
    r = _cli("adapters", "show", "7", "--data-dir", str(tmp_path))
    assert r.returncode == 2 and r.stderr.startswith("error: unknown adapter version 7") and "Traceback" not in r.stderr
    # rollback needs the student to re-materialise; the hash stand-in is not a registry model,
    # so the CLI refuses with a one-line error and nothing changes
    r = _cli("adapters", "rollback", "1", "--data-dir", str(tmp_path))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert AdapterRegistry(tmp_path, "antigravity").active()["version"] == 2


# -- live settings ---------------------------------------------------------------------
def test_reload_settings_from_file_and_env(tmp_path, monkeypatch):
    from antigravity.settings import Settings

    cfg = tmp_path / "engine.toml"
    cfg.write_text('mode = "baseline"\n[teacher]\nname = "spy"\nweight = 0.5\n[adaptation]\nrank = 8\nepochs = 5\n[gate]\nenabled = false\n')
    teacher = SpyTeacher()
    s = Settings.load(cfg, data_dir=str(tmp_path), store__location=str(tmp_path / "qdrant"))
    e = AntigravityEngine(s, encoder=HashEncoder(32), teacher=teacher)
    e.ingest(_corpus())
    # baseline -> hybrid (file)
    cfg.write_text(cfg.read_text().replace('"baseline"', '"hybrid"').replace("0.5", "0.7"))
    changed = e.reload_settings()
    assert changed == {"mode": ("baseline", "hybrid"), "teacher.weight": (0.5, 0.7)}
    assert e.stats()["mode"] == "hybrid" and not e.stats()["teacher_loaded"]  # lazy
    e.search_batch(_queries())
    assert e.run_sedimentation_cycle().promoted and e.stats()["teacher_loaded"]
    assert AdapterRegistry(tmp_path, "antigravity").read_meta(1)["teacher"] == {"name": "spy-teacher", "dim": 48}
    # hybrid -> offline (environment beats the file)
    monkeypatch.setenv("ANTIGRAVITY_MODE", "offline")
    e.reload_settings()
    assert e.settings.mode == "offline"
    rep = e.run_offline_distillation(_queries(seed=4))
    assert rep.metrics["n_texts"] > 0 and not e.stats()["teacher_loaded"]  # released after the run
    # offline -> baseline
    monkeypatch.setenv("ANTIGRAVITY_MODE", "baseline")
    e.reload_settings()
    assert e.settings.mode == "baseline" and not e.stats()["teacher_loaded"]
    assert e.stats()["mode_switches"] == 3
    assert e.count() == 120  # nothing stored was lost
    # a restart key is refused, nothing changes
    monkeypatch.setenv("ANTIGRAVITY_STUDENT__NAME", "paraphrase-MiniLM-L3-v2")
    with pytest.raises(ConfigurationError, match="student.name"):
        e.reload_settings()
    monkeypatch.delenv("ANTIGRAVITY_STUDENT__NAME")
    # an invalid file is refused, nothing changes
    monkeypatch.delenv("ANTIGRAVITY_MODE")
    cfg.write_text('mode = "turbo"\n')
    with pytest.raises(ConfigurationError, match="mode"):
        e.reload_settings()
    assert e.settings.mode == "baseline" and e.settings.teacher.weight == 0.7
    e.close()


def test_env_and_file_drive_cli_and_api_identically(tmp_path):
    from antigravity.settings import Settings

    cfg = tmp_path / "c.toml"
    cfg.write_text('mode = "hybrid"\n[teacher]\nweight = 0.3\n')
    env = {**os.environ, "ANTIGRAVITY_TEACHER__WEIGHT": "0.6", "ANTIGRAVITY_ADAPTATION__RANK": "16"}
    r = subprocess.run(
        [sys.executable, "-c", "from antigravity.cli import main; main()", "config", "show", "--config", str(cfg)],
        capture_output=True, text=True, env={**env, "COLUMNS": "200"}, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    rows = {line.split("│")[1].strip(): line.split("│")[2:4] for line in r.stdout.splitlines() if line.count("│") >= 4}
    assert rows["mode"][0].strip() == "'hybrid'" and "file" in rows["mode"][1]
    assert rows["teacher.weight"][0].strip() == "0.6" and "env" in rows["teacher.weight"][1]
    old = dict(os.environ)
    try:
        os.environ.update({"ANTIGRAVITY_TEACHER__WEIGHT": "0.6", "ANTIGRAVITY_ADAPTATION__RANK": "16"})
        s = Settings.load(cfg)
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert (s.mode, s.teacher.weight, s.adaptation.rank) == ("hybrid", 0.6, 16)
    assert rows["adaptation.rank"][0].strip() == "16"


def test_two_stores_with_one_collection_name_do_not_share_adapters(tmp_path):
    """Same data dir and collection name, another store folder: separate registries."""
    _two_versions(tmp_path).close()
    other = AntigravityEngine(
        data_dir=str(tmp_path), store__location=str(tmp_path / "elsewhere"), encoder=HashEncoder(32), adaptation__rank=8
    )
    assert other.served_version.version == 0 and other.adapters.dir != AdapterRegistry(tmp_path, "antigravity").dir
    assert other.adapters.dir.name.startswith("antigravity@")
    other.close()
    e = _open(tmp_path)
    assert e.served_version.version == 2
    e.close()
