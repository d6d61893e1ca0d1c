"""Small threading helpers shared by the serving and modes layers."""

from __future__ import annotations

import threading


def join(thread: threading.Thread | None, timeout: float | None = None) -> bool:
    """Wait up to ``timeout`` seconds (``None``: forever) for ``thread``; True if no thread is
    running afterwards (``thread`` may be ``None``: nothing was started)."""
    if thread is None:
        return True
    thread.join(timeout)
    return not thread.is_alive()
