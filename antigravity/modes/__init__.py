"""Adaptation modes: strategies and their registry (:mod:`.strategies`) and the runner that
drives them for an engine (:mod:`.runner`)."""

from antigravity.modes.strategies import MODES, BaselineMode, HybridMode, Mode, OfflineMode, get_mode

__all__ = ["MODES", "BaselineMode", "HybridMode", "Mode", "OfflineMode", "get_mode"]
