"""The lightweight adapter: a residual, identity-initialised map on embeddings.

``adapter(x) = x + Δ(x)`` with ``Δ`` zero at initialisation, so an untrained adapter is
exactly the identity (LoRA-style init, Hu et al. 2021):

* low rank ``r < d``: ``Δ(x) = B·A·x``, ``A: (r, d)`` random, ``B: (d, r)`` zero; ``2·d·r``
  parameters (``d = 384, r = 32``: 24,576);
* full rank ``r = d``: ``Δ(x) = W·x``, ``W: (d, d)`` zero; ``d²`` parameters (147,456 for d = 384).

Training keeps it close to an *anchor* — the identity, or the adapter it was warm-started
from — with an L2 penalty ``‖M − M₀‖²_F`` on the effective matrix ``M`` (``identity_reg``).
Served vectors are ``unit(adapter(raw))``: adapters always act on raw student vectors.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class ResidualAdapter(nn.Module):
    """``x ↦ x + Δ(x)`` on ``(n, d)`` float32 embeddings (unnormalised output).

    Args:
        dim: embedding dimension ``d``.
        rank: ``1 ≤ r ≤ d``; ``r = d`` uses one full ``(d, d)`` matrix.

    Raises:
        ValueError: ``rank`` outside ``[1, dim]``.
    """

    def __init__(self, dim: int, rank: int) -> None:
        super().__init__()
        if not 1 <= rank <= dim:
            raise ValueError(f"adapter rank must be in [1, {dim}], got {rank}")
        self.dim, self.rank = int(dim), int(rank)
        if rank == dim:
            self.full = nn.Linear(dim, dim, bias=False)
            nn.init.zeros_(self.full.weight)
        else:
            self.down = nn.Linear(dim, rank, bias=False)
            self.up = nn.Linear(rank, dim, bias=False)
            nn.init.normal_(self.down.weight, std=dim**-0.5)
            nn.init.zeros_(self.up.weight)
        self.register_buffer("anchor", torch.zeros(dim, dim), persistent=False)

    @property
    def is_full(self) -> bool:
        return self.rank == self.dim

    def delta_matrix(self) -> torch.Tensor:
        """The effective ``(d, d)`` matrix ``M`` with ``adapter(x) = x + M·x``."""
        return self.full.weight if self.is_full else self.up.weight @ self.down.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (self.full(x) if self.is_full else self.up(self.down(x)))

    @property
    def n_parameters(self) -> int:
        """Trainable parameter count (``2·d·r``, or ``d²`` at full rank)."""
        return sum(p.numel() for p in self.parameters())

    def set_anchor(self) -> None:
        """Make the current weights the point the regulariser pulls toward."""
        with torch.no_grad():
            self.anchor.copy_(self.delta_matrix())

    def delta_norm(self) -> torch.Tensor:
        """``‖M − M₀‖²_F``: squared distance from the anchor (identity unless re-anchored)."""
        return (self.delta_matrix() - self.anchor).pow(2).sum()

    @torch.no_grad()
    def transform(self, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Apply to ``(n, d) float32`` numpy rows and L2-normalise; returns ``(n, d) float32``."""
        x = np.asarray(x, dtype=np.float32)
        out = np.empty_like(x)
        for i in range(0, len(x), batch_size):
            y = self(torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size])))
            out[i : i + batch_size] = torch.nn.functional.normalize(y, dim=-1).numpy()
        return out

    def clone(self) -> "ResidualAdapter":
        """An independent copy, anchored at its (copied) weights."""
        new = ResidualAdapter(self.dim, self.rank)
        new.load_state_dict(self.state_dict())
        new.set_anchor()
        return new
