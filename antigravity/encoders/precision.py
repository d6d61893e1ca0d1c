"""Encoder precision: resolve ``"auto"`` to ``"bf16"`` or ``"fp32"`` by what the CPU can do.

bfloat16 autocast pays off only on CPUs with native bf16 instructions (``avx512_bf16``, AMX):
there it encodes about 2x faster than fp32; on a CPU without them the bf16 matmuls are
emulated and the same encode runs several times *slower* than fp32. So ``"auto"`` picks bf16
exactly when :func:`cpu_has_native_bf16` says the CPU has native bf16, else fp32. The explicit
choices ``"fp32"`` / ``"bf16"`` are used as given on any CPU.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

from antigravity.core.errors import ConfigurationError
from antigravity.settings import precision_choice

#: /proc/cpuinfo flags that mean native bf16 arithmetic (x86: AVX512-BF16, AMX-BF16)
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpuinfo_flags(text: str) -> set[str]:
    """The CPU flags listed in a ``/proc/cpuinfo`` text (union of every ``flags`` line)."""
    flags: set[str] = set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            flags.update(value.split())
    return flags


def detect_native_bf16(cpuinfo: str | Path = "/proc/cpuinfo", platform: str = sys.platform) -> tuple[bool, str]:
    """``(native bf16?, how it was decided)``: on Linux from the ``flags`` lines of ``cpuinfo``
    (:data:`NATIVE_BF16_FLAGS`); elsewhere, or when the file lists no flags (e.g. aarch64,
    whose ``Features`` lines are not read), torch's check; ``False`` when neither can tell."""
    if platform.startswith("linux"):
        try:
            flags = cpuinfo_flags(Path(cpuinfo).read_text(errors="replace"))
        except OSError:
            flags = set()
        if flags:
            hit = sorted(NATIVE_BF16_FLAGS & flags)
            return bool(hit), f"{cpuinfo} flags: {', '.join(hit) if hit else 'no avx512_bf16 / amx_bf16'}"
    # torch has no public API for this: torch.backends.cpu.get_cpu_capability() names the
    # vector ISA ("AVX512", "AVX2", ...), not bf16 support, so use its private checks
    try:
        import torch

        checks = [getattr(torch.cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        native = any(bool(c()) for c in checks if callable(c))
        return native, f"torch.cpu._is_avx512_bf16_supported / _is_amx_tile_supported: {native}"
    except Exception as exc:  # noqa: BLE001 - no torch or an odd build: assume no native bf16
        return False, f"unknown ({type(exc).__name__}); assuming no native bf16"


_detect_once = functools.lru_cache(maxsize=1)(detect_native_bf16)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic natively. Linux: ``avx512_bf16`` or ``amx_bf16`` in
    the ``/proc/cpuinfo`` flags; elsewhere torch's (private) ``torch.cpu._is_avx512_bf16_supported``
    / ``_is_amx_tile_supported``; ``False`` when neither can tell. Read once per process.
    (Tests monkeypatch this function.)"""
    return _detect_once()[0]


def bf16_capability() -> str:
    """How :func:`cpu_has_native_bf16` decided, for logs and reports."""
    return _detect_once()[1]


def resolve_precision(precision: str | None = None, *, bf16: bool | None = None) -> str:
    """``"fp32"`` or ``"bf16"`` for the asked-for ``precision`` (``"auto"``, ``"fp32"``,
    ``"bf16"``; ``None`` = ``"auto"``) and the old spelling ``bf16`` (``None`` = not given):
    an explicit choice wins; ``"auto"`` is bf16 exactly when :func:`cpu_has_native_bf16`.

    Raises:
        ConfigurationError: an unknown precision, or ``bf16`` and ``precision`` disagree.
    """
    try:
        choice = precision_choice(precision, bf16)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    if choice == "auto":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return choice
