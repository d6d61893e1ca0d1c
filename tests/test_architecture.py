"""The package's structure holds: layers import only downward (import-linter's ``layers``
contract in pyproject.toml), nothing outside the engine and the serving layer touches an
engine private, nothing outside an encoder calls an encoder private, the engine stays a
facade, and the mode registry agrees with the settings' mode sets."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "antigravity"


def test_import_layers_contract_is_kept():
    pytest.importorskip("importlinter")
    proc = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 kept, 0 broken" in proc.stdout


def _modules(exclude: tuple[str, ...]) -> list[Path]:
    return [p for p in PKG.rglob("*.py") if not any(str(p.relative_to(PKG)).startswith(e) for e in exclude)]


ENGINE_PRIVATE = re.compile(r"\b(?:engine|eng|_engine)\._[A-Za-z]\w*")


def test_no_module_outside_engine_and_serving_touches_an_engine_private():
    hits = [f"{p.relative_to(ROOT)}:{i}: {m.group(0)}" for p in _modules(("engine.py", "serving/"))
            for i, line in enumerate(p.read_text().splitlines(), 1) for m in ENGINE_PRIVATE.finditer(line)]
    assert not hits, "\n".join(hits)


def test_the_grep_catches_an_engine_private():  # the check above can fail
    assert ENGINE_PRIVATE.search("ids = engine._traffic") and not ENGINE_PRIVATE.search("engine.traffic.snapshot()")


def test_nothing_outside_an_encoder_calls_an_encoder_private():
    pat = re.compile(r"\bencoder\._[A-Za-z]\w*\(")
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in _modules(("encoders/",)) for i, line in enumerate(p.read_text().splitlines(), 1) if pat.search(line)]
    assert not hits, hits


def test_engine_is_a_facade():
    n = len((PKG / "engine.py").read_text().splitlines())
    assert n <= 310, f"engine.py has {n} lines: move behaviour into serving/ or adaptation/"


def test_mode_registry_agrees_with_settings():
    from antigravity.modes import MODES, get_mode
    from antigravity.settings import KEEP_TEACHER_MODES, TEACHER_MODES, Mode, Settings

    assert set(MODES) == set(get_args(Mode))
    for name in MODES:
        s = Settings.load(mode=name, teacher__name="t" if name in TEACHER_MODES else None)
        mode = get_mode(s)
        assert mode.name == name and mode.needs_teacher == (name in TEACHER_MODES) == s.uses_teacher
        assert s.keeps_teacher == (name in KEEP_TEACHER_MODES)


def test_no_mode_is_tested_by_name_outside_the_registry():
    pat = re.compile(r"""mode\s*(?:==|!=|in)\s*\(?["'](?:baseline|offline|hybrid)""")
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in _modules(("modes.py",)) for i, line in enumerate(p.read_text().splitlines(), 1) if pat.search(line)]
    assert not hits, hits
