"""benchmarks/gate_decisions.py: the decision-accuracy table quoted in docs/protocol.md and the
closing notes, and its cluster-bootstrap interval (decisions that share a split are resampled
together)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

_dir = Path(__file__).resolve().parents[1] / "benchmarks"
_spec = importlib.util.spec_from_file_location("gate_decisions", _dir / "gate_decisions.py")
gd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gd)  # type: ignore[union-attr]


def _dec(correct: bool, seed: int, corpus: str = "c", fold=None, stage: str = "cycle 1") -> dict:
    return {"correct": correct, "seed": seed, "fold": fold, "corpus": corpus, "run": "r.json", "stage": stage}


def test_interval_resamples_whole_splits_not_single_decisions():
    # two splits: one right in all 10 decisions, one wrong in all 10. Resampling splits gives
    # accuracies 0, 0.5 or 1 (a quarter of the resamples at each end); resampling decisions
    # one by one would give a narrow interval around 0.5.
    ds = [_dec(True, 0) for _ in range(10)] + [_dec(False, 1) for _ in range(10)]
    lo, hi = gd.accuracy_interval(ds)
    assert (lo, hi) == (0.0, 1.0)


def test_interval_holds_the_estimate_narrows_with_more_splits_and_is_deterministic():
    def runs(n_splits: int) -> list[dict]:
        return [_dec(i % 4 != 0 or j == 0, seed=i) for i in range(n_splits) for j in range(3)]

    few, many = runs(8), runs(80)
    for ds in (few, many):
        acc = sum(d["correct"] for d in ds) / len(ds)
        lo, hi = gd.accuracy_interval(ds)
        assert lo <= acc <= hi and lo < hi
    (lo8, hi8), (lo80, hi80) = gd.accuracy_interval(few), gd.accuracy_interval(many)
    assert hi80 - lo80 < hi8 - lo8
    assert gd.accuracy_interval(many) == gd.accuracy_interval(many)
    assert gd.accuracy_interval(many, seed=1) != gd.accuracy_interval(many, seed=2)


def test_splits_are_told_apart_by_file_corpus_fold_and_seed():
    base = [_dec(True, 0), _dec(False, 0)]
    assert all(math.isnan(x) for x in gd.accuracy_interval(base))  # one split: nothing to resample
    for other in ({"run": "other.json"}, {"corpus": "d"}, {"fold": 1}, {"seed": 1}):
        lo, hi = gd.accuracy_interval([base[0], {**base[1], **other}])
        assert (lo, hi) == (0.0, 1.0), other


def test_table_prints_the_interval_for_every_row(tmp_path, capsys, monkeypatch):
    decisions = [
        {"delta_no_near_dup": 0.01 * (1 if i % 3 else -1), "promoted": bool(i % 2), "correct": bool(i % 3) == bool(i % 2), "seed": i % 3, "fold": i % 2, "stage": "cycle 1"}
        for i in range(12)
    ]
    run = {"corpora": {"med": {"modes": {"baseline": {"decisions": decisions}}}}}
    path = tmp_path / "med.json"
    path.write_text(json.dumps({"runs": {"none": run}}))
    monkeypatch.setattr(sys, "argv", ["gate_decisions.py", str(path), "--labels", "none"])
    gd.main()
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| all ")]
    assert len(rows) == 1
    lo, hi = gd.accuracy_interval([{**d, "corpus": "med", "run": str(path)} for d in decisions])
    assert rows[0][3] == f"{lo:.2f}–{hi:.2f}"
