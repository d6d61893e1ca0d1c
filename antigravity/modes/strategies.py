"""Adaptation modes as strategies: what a mode does before cycles (``pretrain``) and inside
each cycle (``guide``). One registry, like :data:`antigravity.adaptation.signals.SIGNALS`;
nothing else in the package tests a mode by its name.

* ``baseline`` — homeostatic correction only: cycles learn from label-free traffic signals.
* ``offline`` — pre-train the adapter once by distillation from the teacher (Hinton et al.
  2015, listwise), then homeostatic cycles on top.
* ``hybrid`` — every cycle blends teacher rankings into the homeostatic targets with
  weight ``teacher.weight`` (``(1 − w)·homeostatic + w·teacher``).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

from antigravity.adaptation.context import AdaptationContext, AdaptationReport
from antigravity.core.errors import ConfigurationError, TeacherError, failure_kind

Guidance = Callable[[Any, Any], Any]  # (traffic, targets) -> targets


class Mode(Protocol):
    """An adaptation mode."""

    name: str
    #: whether the mode uses a teacher (a teacher must then be configured)
    needs_teacher: bool
    #: whether the mode pre-trains once before its cycles
    pretrains: bool

    def pretrain(self, ctx: AdaptationContext, queries: Sequence[str], **kwargs: Any) -> AdaptationReport | None:
        """Run the mode's one-off pre-training; ``None`` when it has none."""

    def guide(self, ctx: AdaptationContext, status: Callable[[str], None]) -> Guidance | None:
        """A callable blending teacher guidance into a cycle's targets, or ``None``.
        ``status`` receives ``"used"`` or ``"failed:<kind>"`` for the checkpoint metadata."""


class BaselineMode:
    """Homeostatic correction only (no teacher)."""

    name, needs_teacher, pretrains = "baseline", False, False

    def pretrain(self, ctx: AdaptationContext, queries: Sequence[str], **kwargs: Any) -> AdaptationReport | None:
        return None

    def guide(self, ctx: AdaptationContext, status: Callable[[str], None]) -> Guidance | None:
        return None


class OfflineMode(BaselineMode):
    """Pre-train once by offline distillation from the teacher, then baseline cycles.
    See :func:`antigravity.adaptation.distillation.run_offline_distillation`."""

    name, needs_teacher, pretrains = "offline", True, True

    def pretrain(self, ctx: AdaptationContext, queries: Sequence[str], **kwargs: Any) -> AdaptationReport | None:
        from antigravity.adaptation.distillation import run_offline_distillation

        return run_offline_distillation(ctx, queries, **kwargs)


class HybridMode(BaselineMode):
    """Blend teacher rankings into every cycle with weight ``weight`` ∈ [0, 1]."""

    name, needs_teacher, pretrains = "hybrid", True, False

    def __init__(self, weight: float) -> None:
        self.weight = weight

    def guide(self, ctx: AdaptationContext, status: Callable[[str], None]) -> Guidance | None:
        if self.weight == 0.0:
            return None
        from antigravity.adaptation.distillation import hybrid_guidance

        def guide(traffic, targets):
            try:
                out, st = hybrid_guidance(ctx, traffic, targets, self.weight)
            except Exception as exc:  # noqa: BLE001 - the fallback chain: hybrid -> baseline
                err = exc if isinstance(exc, TeacherError) else TeacherError(f"hybrid guidance failed: {type(exc).__name__}: {exc}", kind=f"guidance_{type(exc).__name__}")
                ctx.report_failure(failure_kind(err), err)
                status(f"failed:{failure_kind(err)}")
                return targets
            status(st)
            return out

        return guide


#: mode name -> factory ``settings -> Mode``
MODES: dict[str, Callable[[Any], Mode]] = {
    "baseline": lambda s: BaselineMode(),
    "offline": lambda s: OfflineMode(),
    "hybrid": lambda s: HybridMode(s.teacher.weight),
}


def get_mode(settings: Any) -> Mode:
    """The strategy for ``settings.mode``.

    Raises:
        ConfigurationError: unknown mode (names it and the known ones).
    """
    try:
        return MODES[settings.mode](settings)
    except KeyError:
        raise ConfigurationError(f"unknown mode {settings.mode!r}; choose one of {sorted(MODES)}") from None
