"""The README's Python example runs as written (with a temporary data dir)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.models
def test_readme_python_example(tmp_path, monkeypatch, capsys):
    block = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    block = block.replace('"/tmp/antigravity-demo"', repr(str(tmp_path)))
    monkeypatch.chdir(ROOT)
    exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "d1" in out and "'mode': 'hybrid'" in out
