"""Training the adapter: vector targets (homeostatic corrections) and listwise targets
(ranking distillation). Both keep the adapter near the identity.

* Vector targets: ``L = Σ w·‖unit(f(x)) − t‖² / Σ w + λ·‖B·A‖²_F`` for rows ``x`` with unit
  targets ``t`` (``λ = identity_reg``).
* Listwise targets (Hinton et al. 2015, knowledge distillation; listwise form as in
  RankDistil / Margin-MSE-style ranking distillation): for a query ``q`` with candidates
  ``C`` and target distribution ``p`` over ``C``,
  ``L = T²·KL(p ‖ softmax(s/T))`` where ``s_c = cos(f_q(q), f_d(d_c))``; optionally
  ``α·CE(hard labels)``.

All training is seeded (``torch.manual_seed`` + numpy PCG64 batch order) and CPU-only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .adapter import ResidualAdapter
from .errors import AdaptationError


@dataclass
class VectorTargets:
    """Rows to move: ``inputs`` ``(n, d) float32`` raw vectors, ``targets`` ``(n, d)`` unit
    vectors, ``weights`` ``(n,)`` (default ones)."""

    inputs: np.ndarray
    targets: np.ndarray
    weights: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass
class ListwiseTargets:
    """Ranking targets: ``queries`` ``(m, d)`` raw query vectors, ``candidates`` ``(m, K)``
    int64 row indices into the raw doc matrix, ``probs`` ``(m, K)`` float32 rows summing to 1,
    optional ``hard`` ``(m, K)`` 0/1 relevance labels (labelled feedback)."""

    queries: np.ndarray
    candidates: np.ndarray
    probs: np.ndarray
    hard: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.queries)


@dataclass
class TrainResult:
    loss_before: float
    loss_after: float
    curve: list[float] = field(default_factory=list)


def _check_finite(name: str, *arrays: np.ndarray | None) -> None:
    for a in arrays:
        if a is not None and not np.isfinite(a).all():
            raise AdaptationError(f"{name} contain NaN or inf; cycle aborted")


def fit_vector_targets(
    adapter: ResidualAdapter,
    data: VectorTargets,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    weight_decay: float,
    identity_reg: float,
    seed: int,
) -> TrainResult:
    """Fit ``adapter`` so ``unit(adapter(x)) ≈ t``. Raises :class:`AdaptationError` on
    non-finite inputs, targets or loss (the adapter is then left unusable: callers train a clone)."""
    _check_finite("vector targets", data.inputs, data.targets, data.weights)
    if len(data) == 0:
        raise AdaptationError("no training rows")
    torch.manual_seed(seed)
    rng = np.random.Generator(np.random.PCG64(seed))
    X = torch.from_numpy(np.ascontiguousarray(data.inputs, dtype=np.float32))
    T = torch.from_numpy(np.ascontiguousarray(data.targets, dtype=np.float32))
    W = torch.from_numpy(np.ones(len(X), np.float32) if data.weights is None else data.weights.astype(np.float32))
    opt = torch.optim.AdamW(adapter.parameters(), lr=lr, weight_decay=weight_decay)

    def full_loss() -> float:
        with torch.no_grad():
            y = F.normalize(adapter(X), dim=-1)
            return float((W * ((y - T) ** 2).sum(1)).sum() / W.sum() + identity_reg * adapter.delta_norm())

    before = full_loss()
    curve = []
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(X)))
        for i in range(0, len(X), batch_size):
            b = order[i : i + batch_size]
            y = F.normalize(adapter(X[b]), dim=-1)
            loss = (W[b] * ((y - T[b]) ** 2).sum(1)).sum() / W[b].sum() + identity_reg * adapter.delta_norm()
            if not torch.isfinite(loss):
                raise AdaptationError("training loss became non-finite; cycle aborted")
            opt.zero_grad()
            loss.backward()
            opt.step()
        curve.append(full_loss())
    return TrainResult(before, curve[-1], curve)


def listwise_loss(
    q_adapter: ResidualAdapter | None,
    d_adapter: ResidualAdapter | None,
    Q: torch.Tensor,
    D: torch.Tensor,
    cand: torch.Tensor,
    P: torch.Tensor,
    temperature: float,
    hard: torch.Tensor | None = None,
    alpha: float = 0.0,
) -> torch.Tensor:
    """``T²·KL(P ‖ softmax(s/T)) (+ α·CE on hard labels)`` for one batch; shapes
    ``Q (b, d)``, ``D (N, d)``, ``cand (b, K)``, ``P (b, K)``."""
    q = F.normalize(q_adapter(Q) if q_adapter is not None else Q, dim=-1)
    docs = D[cand]  # (b, K, d)
    docs = F.normalize(d_adapter(docs) if d_adapter is not None else docs, dim=-1)
    s = torch.einsum("bd,bkd->bk", q, docs) / temperature
    logp = F.log_softmax(s, dim=1)
    kl = (P * (torch.log(P.clamp_min(1e-12)) - logp)).sum(1).mean() * temperature**2
    if hard is not None and alpha > 0:
        ce = -(hard * logp).sum(1) / hard.sum(1).clamp_min(1)
        return alpha * ce.mean() + (1 - alpha) * kl
    return kl


def fit_listwise(
    q_adapter: ResidualAdapter | None,
    d_adapter: ResidualAdapter | None,
    data: ListwiseTargets,
    docs: np.ndarray,
    *,
    temperature: float,
    epochs: int,
    lr: float,
    batch_size: int,
    weight_decay: float,
    identity_reg: float,
    seed: int,
    alpha: float = 0.0,
    early_stop=None,
) -> TrainResult:
    """Train query-side and/or doc-side adapters (the same object for a shared adapter)
    with :func:`listwise_loss`. ``early_stop(epoch) -> bool`` is called after each epoch
    (e.g. a validation check on a dev split); returning True stops training.

    Raises:
        ConfigurationError-like :class:`AdaptationError` on non-finite inputs or loss.
    """
    _check_finite("listwise targets", data.queries, data.probs, docs)
    if len(data) < 2:
        raise AdaptationError(f"need at least 2 training queries, got {len(data)}")
    torch.manual_seed(seed)
    rng = np.random.Generator(np.random.PCG64(seed))
    params = []
    for a in {id(a): a for a in (q_adapter, d_adapter) if a is not None}.values():
        params += list(a.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    Q = torch.from_numpy(np.ascontiguousarray(data.queries, dtype=np.float32))
    D = torch.from_numpy(np.ascontiguousarray(docs, dtype=np.float32))
    C = torch.from_numpy(np.ascontiguousarray(data.candidates, dtype=np.int64))
    P = torch.from_numpy(np.ascontiguousarray(data.probs, dtype=np.float32))
    H = torch.from_numpy(data.hard.astype(np.float32)) if data.hard is not None else None

    def reg() -> torch.Tensor:
        return identity_reg * sum(a.delta_norm() for a in {id(a): a for a in (q_adapter, d_adapter) if a is not None}.values())

    def full_loss() -> float:
        with torch.no_grad():
            return float(listwise_loss(q_adapter, d_adapter, Q, D, C, P, temperature, H, alpha) + reg())

    before = full_loss()
    curve = []
    for epoch in range(epochs):
        order = torch.from_numpy(rng.permutation(len(Q)))
        for i in range(0, len(Q), batch_size):
            b = order[i : i + batch_size]
            loss = listwise_loss(q_adapter, d_adapter, Q[b], D, C[b], P[b], temperature, H[b] if H is not None else None, alpha) + reg()
            if not torch.isfinite(loss):
                raise AdaptationError("training loss became non-finite; cycle aborted")
            opt.zero_grad()
            loss.backward()
            opt.step()
        curve.append(full_loss())
        if early_stop is not None and early_stop(epoch):
            break
    return TrainResult(before, curve[-1] if curve else before, curve)
