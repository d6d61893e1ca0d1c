"""The lightweight adapter: a residual, identity-initialised, low-rank map on embeddings.

``adapter(x) = unit(x + B·A·x)`` with ``A: (r, d)``, ``B: (d, r)``; ``B`` starts at zero so an
untrained adapter is exactly the identity (LoRA-style init, Hu et al. 2021). Parameters:
``2·d·r`` (``d = 384, r = 32``: 24,576). Training code keeps it close to identity with an L2
penalty on ``B·A`` (``identity_reg``) and weight decay.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class ResidualAdapter(nn.Module):
    """``x ↦ x + up(down(x))`` on ``(n, d)`` float32 embeddings (unnormalised output).

    Args:
        dim: embedding dimension ``d``.
        rank: inner dimension ``r`` (``1 ≤ r ≤ d``).

    Raises:
        ValueError: ``rank`` outside ``[1, dim]``.
    """

    def __init__(self, dim: int, rank: int) -> None:
        super().__init__()
        if not 1 <= rank <= dim:
            raise ValueError(f"adapter rank must be in [1, {dim}], got {rank}")
        self.dim, self.rank = int(dim), int(rank)
        self.down = nn.Linear(dim, rank, bias=False)
        self.up = nn.Linear(rank, dim, bias=False)
        nn.init.normal_(self.down.weight, std=dim**-0.5)
        nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.down(x))

    @property
    def n_parameters(self) -> int:
        """Trainable parameter count (``2·d·r``)."""
        return sum(p.numel() for p in self.parameters())

    def delta_norm(self) -> torch.Tensor:
        """Frobenius norm² of ``B·A`` (distance from identity)."""
        return (self.up.weight @ self.down.weight).pow(2).sum()

    @torch.no_grad()
    def transform(self, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Apply to ``(n, d) float32`` numpy rows and L2-normalise; returns ``(n, d) float32``."""
        out = np.empty_like(np.asarray(x, dtype=np.float32))
        for i in range(0, len(x), batch_size):
            y = self(torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size], dtype=np.float32)))
            out[i : i + batch_size] = torch.nn.functional.normalize(y, dim=-1).numpy()
        return out

    def state_dict_numpy(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy() for k, v in self.state_dict().items()}

    def clone(self) -> "ResidualAdapter":
        new = ResidualAdapter(self.dim, self.rank)
        new.load_state_dict(self.state_dict())
        return new
