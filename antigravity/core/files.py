"""File-system primitives every layer may use: atomic writes and private data folders."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from antigravity.core.errors import StoreError

logger = logging.getLogger("antigravity.store")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + ``os.replace`` + dir fsync)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)

def make_private_dir(path: str | Path) -> Path:
    """Create ``path`` (and missing parents) with mode 0700; an existing folder is left as
    it is (see :func:`check_permissions`). Returns the path.

    Raises:
        StoreError: the folder cannot be created (names it and the OS error).
    """
    p = Path(path).expanduser()
    missing = []
    q = p
    while not q.exists() and q != q.parent:
        missing.append(q)
        q = q.parent
    try:
        for d in reversed(missing):
            d.mkdir(mode=0o700, exist_ok=True)
            os.chmod(d, 0o700)  # mkdir's mode is reduced by the umask; be explicit
    except OSError as exc:
        raise StoreError(f"cannot create data folder {str(p)!r}: {exc.strerror or exc}") from None
    return p

def check_permissions(path: str | Path) -> list[str]:
    """Warnings for ``path`` (a folder) being writable by group or others — whoever can
    write the embedded store folder can run code as the engine's user (pickled points).
    Each warning is logged and returned (empty list: fine or not a folder)."""
    p = Path(path).expanduser()
    try:
        mode = p.stat().st_mode
    except OSError:
        return []
    out = []
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = " and ".join(w for w, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH)) if mode & bit)
        out.append(
            f"{p} is writable by {who} (mode {stat.S_IMODE(mode):04o}): anyone who can write it can run code as this "
            f"process (the embedded store unpickles its points); run: chmod go-w {p}"
        )
    for msg in out:
        logger.warning(msg)
    return out
