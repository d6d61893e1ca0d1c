"""Make ``import antigravity`` find this package, not the standard library's easter egg.

CPython ships a module named ``antigravity`` (``import antigravity`` opens xkcd 353), and the
standard library comes before site-packages on ``sys.path``, so an installed package of that
name would be shadowed. The ``antigravity-bootstrap.pth`` file installed with this package
imports this module at interpreter start-up; it puts a finder first on ``sys.meta_path``
that resolves the name ``antigravity`` to the first ``sys.path`` entry holding a *package*
``antigravity/__init__.py``. Every other import is untouched.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys


class AntigravityPackageFinder:
    """Meta path finder for the top-level name ``antigravity`` only."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):  # noqa: D102 - importlib protocol
        if fullname != "antigravity":
            return None
        for entry in sys.path:
            if entry == "":
                entry = os.getcwd()
            if isinstance(entry, str) and os.path.isfile(os.path.join(entry, "antigravity", "__init__.py")):
                return importlib.machinery.PathFinder.find_spec(fullname, [entry])
        return None


def install() -> None:
    """Insert :class:`AntigravityPackageFinder` at the front of ``sys.meta_path`` (idempotent)."""
    if not any(getattr(f, "__name__", "") == "AntigravityPackageFinder" for f in sys.meta_path):
        sys.meta_path.insert(0, AntigravityPackageFinder)
