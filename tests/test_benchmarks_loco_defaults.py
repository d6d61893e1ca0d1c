"""benchmarks/loco_defaults.py: the leave-one-corpus-out check of the defaults quoted in
docs/protocol.md. Each held-out corpus must get the setting the other corpora choose — never
its own — scored on itself; checked on synthetic recorded decisions and stopping curves."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

_dir = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(_dir))
_spec = importlib.util.spec_from_file_location("loco_defaults", _dir / "loco_defaults.py")
loco = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(loco)  # type: ignore[union-attr]


def _result(tmp_path, name, corpora: dict[str, dict[str, list[dict]]]) -> str:
    run = {"corpora": {c: {"modes": {m: {"decisions": ds} for m, ds in modes.items()}} for c, modes in corpora.items()}}
    p = tmp_path / f"{name}.json"
    p.write_text(json.dumps({"runs": {"none": run}}))
    return str(p)


def _dec(test, judge, p, **kw):
    return {"delta_no_near_dup": test, "gate_delta": judge, "gate_p": p, "promoted": p < 0.05, "correct": True, "seed": 0, "stage": "cycle 1", **kw}


def _table(out: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split("|") for line in out.splitlines() if line.startswith("| ") and not line.startswith("| held") and "---" not in line]
    return {r[0].strip(): [c.strip() for c in r[1:]] for r in rows}


def test_alpha_is_chosen_on_the_other_corpora_and_scored_on_the_held_out_one(tmp_path, capsys):
    # a and b: gains the judge finds at p 0.15 (promoted only at α ≥ 0.2); c: losses at p 0.15
    gains = [_dec(0.01, 0.01, 0.15) for _ in range(4)]
    losses = [_dec(-0.01, 0.01, 0.15) for _ in range(4)]
    path = _result(tmp_path, "r", {"a": {"offline": gains}, "b": {"offline": gains}, "c": {"offline": losses}})
    assert loco._alpha_score(gains, 0.05) == (0, 0) and loco._alpha_score(gains, 0.2) == (4, 0)
    assert loco._alpha_score(losses, 0.2) == (0, 4)  # four promoted losses
    loco.loco_alpha([path], old=0.05, now=0.2)
    t = _table(capsys.readouterr().out)
    # columns: n, α chosen, right at chosen, right at old 0.05, right at global 0.2, promoted losses at chosen
    # holding out a: b's gains and c's losses tie (4 right at every level) → the smaller, conservative level
    assert t["a"] == ["4", "0.05", "0", "0", "4", "0"] and t["b"] == t["a"]
    # holding out c: a and b both want α ≥ 0.2 → 0.2 (the smallest of the best), which promotes c's four losses
    assert t["c"] == ["4", "0.2", "0", "4", "0", "4"]
    assert t["all (held-out sums)"][:4] == ["12", "", "0 (0.00)", "4 (0.33)"]


def test_patience_is_chosen_on_the_other_corpora(tmp_path, capsys, monkeypatch):
    import numpy as np

    # the stopping curve peaks at epoch 1 and again higher at epoch 12; the watched (deciding) half gains only at 12
    s = np.array([0.0, 0.5] + [0.4] * 10 + [0.9] + [0.3] * 40)
    late = np.array([0.0] * 12 + [0.1] * 41)
    early = np.array([0.0, 0.1] + [0.0] * 51)  # corpus "z": what epoch 1 kept was the better one
    cs = [{"corpus": c, "seed": 0, "s": s, "w": w, "w0": 0.0} for c, w in (("x", late), ("y", late), ("z", early))]
    monkeypatch.setattr(loco, "curves", lambda paths: cs)
    loco.loco_patience(["unused"], old=10, now=20)
    t = _table(capsys.readouterr().out)
    # columns: patience chosen, gain at chosen, at old 10, at global 20
    # holding out z: x and y gain only if training waits past epoch 1 → 20, the smallest patience that does
    assert t["z"] == ["20", "+0.0000", "+0.1000", "+0.0000"]
    # holding out x: y (late) and z (early) tie at 0.05 for every patience → the smallest, 5, which stops at epoch 1
    assert t["x"] == ["5", "+0.0000", "+0.0000", "+0.1000"] and t["y"] == t["x"]


def test_hybrid_weight_is_chosen_on_the_other_corpora(tmp_path, capsys):
    half = _result(tmp_path, "half", {"a": {"hybrid": [_dec(0.01, 0, 1)]}, "b": {"hybrid": [_dec(0.02, 0, 1)]}, "c": {"hybrid": [_dec(0.0, 0, 1)], "offline": [_dec(0.5, 0, 1)]}})
    one = _result(tmp_path, "one", {"a": {"hybrid": [_dec(0.03, 0, 1)]}, "b": {"hybrid": [_dec(0.0, 0, 1)]}, "c": {"hybrid": [_dec(0.04, 0, 1), _dec(-0.02, 0, 1)]}})
    loco.loco_weight([half], [one])
    t = _table(capsys.readouterr().out)
    # columns: candidates, weight chosen, mean Δ at chosen, at 0.5, at 1.0 (offline candidates are not hybrid ones)
    assert t["c"] == ["1 / 2", "0.5", "+0.0000", "+0.0000", "+0.0100"]  # a, b: 0.015 at 0.5 = 0.015 at 1.0 → the smaller weight
    assert t["b"] == ["1 / 1", "1", "+0.0000", "+0.0200", "+0.0000"]  # a, c: 0.005 at 0.5 < 0.0167 at 1.0
