"""Helpers shared by the feedback benchmark scripts (``benchmarks/feedback_*.py``)."""

from __future__ import annotations

import json
import os
from typing import Any


def write_json(path: str | None, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` (parent folders created; numpy scalars as
    floats); nothing when ``path`` is ``None``."""
    if not path:
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as fh:
        json.dump(obj, fh, indent=2, default=float)
