"""Training the adapter: vector targets (homeostatic corrections) and listwise targets
(ranking distillation). Both keep the adapter near the identity.

* Vector targets: ``L = Σ w·‖unit(f(x)) − t‖² / Σ w + λ·‖M − M₀‖²_F`` for rows ``x`` with
  unit targets ``t`` (``λ = identity_reg``, ``M₀`` the adapter's anchor).
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

from antigravity.adaptation.adapter import ResidualAdapter
from antigravity.core.errors import AdaptationError


@dataclass
class VectorTargets:
    """Rows to move: ``inputs`` ``(n, d) float32`` raw vectors, ``targets`` ``(n, d)`` unit
    vectors, ``weights`` ``(n,)`` (default ones), ``query_rows`` ``(n,) bool`` marking
    query rows (moved by the query adapter; others by the document adapter)."""

    inputs: np.ndarray
    targets: np.ndarray
    weights: np.ndarray | None = None
    query_rows: np.ndarray | None = None  # bool mask: rows that are queries (else documents)

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass
class ListwiseTargets:
    """Ranking targets: ``queries`` ``(m, d)`` raw query vectors, ``candidates`` ``(m, K)``
    int64 row indices into the raw doc matrix (``None``: every document, ``K = N``), ``probs`` ``(m, K)`` float32 rows summing to 1,
    optional ``hard`` ``(m, K)`` 0/1 relevance labels (labelled feedback)."""

    queries: np.ndarray
    candidates: np.ndarray | None
    probs: np.ndarray
    hard: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.queries)


@dataclass
class TrainResult:
    loss_before: float
    loss_after: float
    curve: list[float] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def _check_finite(name: str, *arrays: np.ndarray | None) -> None:
    for a in arrays:
        if a is not None and not np.isfinite(a).all():
            raise AdaptationError(f"{name} contain NaN or inf; cycle aborted")


def _training_setup(q_adapter, d_adapter, lr: float, weight_decay: float, seed: int):
    """Seed torch and a PCG64 generator; AdamW over the distinct adapters (a shared adapter
    counts once). Returns ``(rng, adapters, optimizer)``."""
    torch.manual_seed(seed)
    rng = np.random.Generator(np.random.PCG64(seed))
    adapters = list({id(a): a for a in (q_adapter, d_adapter) if a is not None}.values())
    opt = torch.optim.AdamW([p for a in adapters for p in a.parameters()], lr=lr, weight_decay=weight_decay)
    return rng, adapters, opt


def _step(opt, loss: torch.Tensor) -> None:
    """One optimiser step; a non-finite loss aborts with :class:`AdaptationError`."""
    if not torch.isfinite(loss):
        raise AdaptationError("training loss became non-finite; cycle aborted")
    opt.zero_grad()
    loss.backward()
    opt.step()


def listwise_loss(
    q_adapter: ResidualAdapter | None,
    d_adapter: ResidualAdapter | None,
    Q: torch.Tensor,
    D: torch.Tensor,
    cand: torch.Tensor | None,
    P: torch.Tensor,
    temperature: float,
    hard: torch.Tensor | None = None,
    alpha: float = 0.0,
) -> torch.Tensor:
    """``T²·KL(P ‖ softmax(s/T)) (+ α·CE on hard labels)`` for one batch.

    Shapes: ``Q (b, d)``, ``D (N, d)``, ``cand (b, K)`` int64 (``None``: all ``N`` documents
    are candidates), ``P (b, K)``. Document vectors are adapted once per call (``N·d²``),
    then scores gathered, so memory is ``O(b·N)``, not ``O(b·K·d)``.
    """
    q = F.normalize(q_adapter(Q) if q_adapter is not None else Q, dim=-1)
    docs = F.normalize(d_adapter(D) if d_adapter is not None else D, dim=-1)
    s_all = q @ docs.T
    s = (s_all if cand is None else torch.gather(s_all, 1, cand)) / temperature
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
    rng, adapters, opt = _training_setup(q_adapter, d_adapter, lr, weight_decay, seed)
    Q = torch.from_numpy(np.ascontiguousarray(data.queries, dtype=np.float32))
    D = torch.from_numpy(np.ascontiguousarray(docs, dtype=np.float32))
    C = None if data.candidates is None else torch.from_numpy(np.ascontiguousarray(data.candidates, dtype=np.int64))
    P = torch.from_numpy(np.ascontiguousarray(data.probs, dtype=np.float32))
    H = torch.from_numpy(data.hard.astype(np.float32)) if data.hard is not None else None

    def reg() -> torch.Tensor:
        return identity_reg * sum(a.delta_norm() for a in adapters)

    def full_loss() -> float:
        with torch.no_grad():
            return float(listwise_loss(q_adapter, d_adapter, Q, D, C, P, temperature, H, alpha) + reg())

    before = full_loss()
    curve = []
    for epoch in range(epochs):
        order = torch.from_numpy(rng.permutation(len(Q)))
        for i in range(0, len(Q), batch_size):
            b = order[i : i + batch_size]
            _step(opt, listwise_loss(q_adapter, d_adapter, Q[b], D, None if C is None else C[b], P[b], temperature, H[b] if H is not None else None, alpha) + reg())
        curve.append(full_loss())
        if early_stop is not None and early_stop(epoch):
            break
    return TrainResult(before, curve[-1] if curve else before, curve)


def fit_blend(
    q_adapter: ResidualAdapter | None,
    d_adapter: ResidualAdapter | None,
    homeostatic: VectorTargets | ListwiseTargets | None,
    teacher: ListwiseTargets | None,
    docs: np.ndarray,
    *,
    teacher_weight: float,
    temperature: float,
    epochs: int,
    lr: float,
    batch_size: int,
    weight_decay: float,
    identity_reg: float,
    seed: int,
) -> TrainResult:
    """Hybrid objective ``(1 − w)·L_homeostatic + w·L_teacher`` (``w = teacher_weight``).

    ``L_homeostatic`` is the vector-target loss (on the shared adapter) or a listwise loss;
    ``L_teacher`` the listwise KL to teacher rankings. ``w = 0`` never touches the teacher
    term and ``w = 1`` ignores the homeostatic one. Each step draws one mini-batch from each.
    """
    if (teacher is None or teacher_weight == 0.0) and not isinstance(homeostatic, VectorTargets):
        return fit_listwise(q_adapter, d_adapter, homeostatic, docs, temperature=temperature, epochs=epochs, lr=lr, batch_size=min(batch_size, 64), weight_decay=weight_decay, identity_reg=identity_reg, seed=seed)
    if teacher is not None:
        _check_finite("teacher targets", teacher.queries, teacher.probs, docs)
    else:
        teacher_weight = 0.0
    if isinstance(homeostatic, VectorTargets):
        _check_finite("vector targets", homeostatic.inputs, homeostatic.targets, homeostatic.weights)
    rng, adapters, opt = _training_setup(q_adapter, d_adapter, lr, weight_decay, seed)
    D = torch.from_numpy(np.ascontiguousarray(docs, np.float32))
    if teacher is not None:
        tq = torch.from_numpy(np.ascontiguousarray(teacher.queries, np.float32))
        tp = torch.from_numpy(np.ascontiguousarray(teacher.probs, np.float32))
        tc = None if teacher.candidates is None else torch.from_numpy(teacher.candidates.astype(np.int64))
    w = float(teacher_weight)

    def h_loss(idx) -> torch.Tensor:
        if homeostatic is None or w == 1.0:
            return torch.zeros(())
        if isinstance(homeostatic, VectorTargets):
            X = torch.from_numpy(homeostatic.inputs[idx].astype(np.float32))
            T = torch.from_numpy(homeostatic.targets[idx].astype(np.float32))
            W = torch.ones(len(idx)) if homeostatic.weights is None else torch.from_numpy(homeostatic.weights[idx].astype(np.float32))
            qmask = None if homeostatic.query_rows is None else torch.from_numpy(homeostatic.query_rows[idx])
            Y = torch.empty_like(X)
            qa, da = q_adapter or d_adapter, d_adapter or q_adapter
            if qmask is None:
                Y = qa(X)
            else:
                Y[qmask] = qa(X[qmask]) if bool(qmask.any()) else Y[qmask]
                Y[~qmask] = da(X[~qmask]) if bool((~qmask).any()) else Y[~qmask]
            return (W * ((F.normalize(Y, dim=-1) - T) ** 2).sum(1)).sum() / W.sum()
        hq = torch.from_numpy(homeostatic.queries[idx].astype(np.float32))
        hc = None if homeostatic.candidates is None else torch.from_numpy(homeostatic.candidates[idx].astype(np.int64))
        hp = torch.from_numpy(homeostatic.probs[idx].astype(np.float32))
        return listwise_loss(q_adapter, d_adapter, hq, D, hc, hp, temperature)

    def reg() -> torch.Tensor:
        return identity_reg * sum(a.delta_norm() for a in adapters)

    n_h = len(homeostatic) if homeostatic is not None else 0
    n_t = len(teacher) if teacher is not None else 0

    def total(hidx, tidx) -> torch.Tensor:
        lt = listwise_loss(q_adapter, d_adapter, tq[tidx], D, None if tc is None else tc[tidx], tp[tidx], temperature) if w > 0 else torch.zeros(())
        lh = h_loss(hidx) if n_h else torch.zeros(())
        return (1 - w) * lh + w * lt + reg()

    with torch.no_grad():
        before = float(total(np.arange(n_h), torch.arange(n_t)))
    curve = []
    steps = max(1, int(np.ceil(max(n_h, n_t) / batch_size)))
    for _ in range(epochs):
        h_order = rng.permutation(n_h) if n_h else np.arange(0)
        for step in range(steps):
            hidx = h_order[(step * batch_size) % max(n_h, 1) :][:batch_size] if n_h else np.arange(0)
            tidx = torch.from_numpy(rng.integers(0, n_t, size=min(batch_size, n_t))) if n_t else torch.arange(0)
            _step(opt, total(hidx, tidx))
        with torch.no_grad():
            curve.append(float(total(np.arange(n_h), torch.arange(n_t))))
    return TrainResult(before, curve[-1], curve)
