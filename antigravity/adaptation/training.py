"""Training the adapter: vector targets (homeostatic corrections) and listwise targets
(ranking distillation). Both keep the adapter near the identity.

Losses are small :class:`torch.nn.Module` objects with ``get_config_dict()`` (as
sentence-transformers losses):

* :class:`VectorCosineLoss`: ``Σ w·‖unit(f(x)) − t‖² / Σ w`` for rows ``x`` with unit
  targets ``t``.
* :class:`ListwiseKLLoss` (Hinton et al. 2015, knowledge distillation; listwise form as in
  RankDistil / Margin-MSE-style ranking distillation): for a query ``q`` with candidates
  ``C`` and target distribution ``p`` over ``C``, ``T²·KL(p ‖ softmax(s/T))`` where
  ``s_c = cos(f_q(q), f_d(d_c))``; optionally mixed with ``α·CE(hard labels)``.
* :class:`IdentityRegularizer`: ``λ·‖M − M₀‖²_F`` (``λ = identity_reg``, ``M₀`` the
  adapter's anchor), added to every objective by :func:`fit`.
* :class:`BlendedLoss`: ``(1 − w)·L_homeostatic + w·L_teacher`` composed of the above.

:func:`fit` is the one training loop (AdamW, per-epoch loss curve, optional early stop);
:func:`fit_listwise` and :func:`fit_blend` build a loss and its batches for it.
All training is seeded (``torch.manual_seed`` + numpy PCG64 batch order) and CPU-only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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
    """What :func:`fit` returns: the full-data objective (loss + identity regulariser) before
    training and after the last epoch, the per-epoch ``curve``, and caller-specific ``extra``."""

    loss_before: float
    loss_after: float
    curve: list[float] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def _check_finite(name: str, *arrays: np.ndarray | None) -> None:
    for a in arrays:
        if a is not None and not np.isfinite(a).all():
            raise AdaptationError(f"{name} contain NaN or inf; cycle aborted")


class Batches(Protocol):
    """What :func:`fit` trains on (:class:`ShuffledBatches`, :class:`BlendedBatches`):
    ``full()`` — the loss arguments over all the data (for ``loss_before`` and the per-epoch
    curve); ``epoch(rng)`` — the mini-batch loss arguments of one epoch, drawn from the numpy
    generator ``rng``."""

    def full(self) -> tuple: ...

    def epoch(self, rng: np.random.Generator) -> Iterator[tuple]: ...


def _apply(adapter: ResidualAdapter | None, x: torch.Tensor) -> torch.Tensor:
    return adapter(x) if adapter is not None else x


# --------------------------------------------------------------------------- losses


class VectorCosineLoss(nn.Module):
    """Weighted vector-target loss ``Σ w·‖unit(f(x)) − t‖² / Σ w`` (for unit ``t`` this is
    ``2 − 2·cos(f(x), t)`` per row, weighted).

    ``f`` is the query adapter on query rows and the document adapter on the others; a
    missing side falls back to the other adapter (one adapter then moves every row).

    Args:
        q_adapter, d_adapter: the adapters (``None`` for an untrained side; not both).
    """

    def __init__(self, q_adapter: ResidualAdapter | None, d_adapter: ResidualAdapter | None) -> None:
        super().__init__()
        self.q_adapter = q_adapter if q_adapter is not None else d_adapter
        self.d_adapter = d_adapter if d_adapter is not None else q_adapter

    def forward(self, X: torch.Tensor, T: torch.Tensor, W: torch.Tensor | None = None, query_rows: torch.Tensor | None = None) -> torch.Tensor:
        """``X (n, d) float32`` raw rows, ``T (n, d) float32`` unit targets, ``W (n,) float32``
        row weights (``None``: ones), ``query_rows (n,) bool`` (``None``: every row goes through
        the query adapter). Returns a 0-dim float32 tensor."""
        W = torch.ones(len(X)) if W is None else W
        if query_rows is None:
            Y = self.q_adapter(X)
        else:
            Y = torch.empty_like(X)
            if bool(query_rows.any()):
                Y[query_rows] = self.q_adapter(X[query_rows])
            if bool((~query_rows).any()):
                Y[~query_rows] = self.d_adapter(X[~query_rows])
        return (W * ((F.normalize(Y, dim=-1) - T) ** 2).sum(1)).sum() / W.sum()

    def get_config_dict(self) -> dict:
        """Hyperparameters (none): ``VectorCosineLoss(q, d, **cfg)`` rebuilds the loss."""
        return {}


class ListwiseKLLoss(nn.Module):
    """Listwise distillation loss (Hinton et al. 2015, knowledge distillation; listwise form
    as in RankDistil / Margin-MSE-style ranking distillation):
    ``T²·KL(P ‖ softmax(s/T))`` with ``s_c = cos(f_q(q), f_d(d_c))`` over each query's
    candidates; with hard labels and ``α > 0`` the convex mix
    ``α·CE(hard) + (1 − α)·T²·KL`` where ``CE = −Σ_c h_c·log softmax(s/T)_c / max(1, Σ_c h_c)``.

    Args:
        q_adapter, d_adapter: adapters applied to raw query / document vectors (``None``:
            that side is left raw; the same object for a shared adapter).
        temperature: ``T > 0``.
        alpha: weight ``α`` of the hard-label term (``0``: hard labels are ignored).
    """

    def __init__(self, q_adapter: ResidualAdapter | None, d_adapter: ResidualAdapter | None, temperature: float, alpha: float = 0.0) -> None:
        super().__init__()
        self.q_adapter, self.d_adapter = q_adapter, d_adapter
        self.temperature, self.alpha = temperature, alpha

    def forward(self, Q: torch.Tensor, D: torch.Tensor, cand: torch.Tensor | None, P: torch.Tensor, hard: torch.Tensor | None = None) -> torch.Tensor:
        """Loss for one batch. ``Q (b, d) float32`` raw queries, ``D (N, d) float32`` raw
        documents, ``cand (b, K) int64`` rows of ``D`` (``None``: all ``N`` documents are
        candidates, ``K = N``), ``P (b, K) float32`` target distributions, ``hard (b, K)
        float32`` 0/1 labels or ``None``. Documents are adapted once per call (``N·d²``),
        then scores gathered, so memory is ``O(b·N)``, not ``O(b·K·d)``. Returns a 0-dim
        float32 tensor."""
        T = self.temperature
        q = F.normalize(_apply(self.q_adapter, Q), dim=-1)
        docs = F.normalize(_apply(self.d_adapter, D), dim=-1)
        s_all = q @ docs.T
        s = (s_all if cand is None else torch.gather(s_all, 1, cand)) / T
        logp = F.log_softmax(s, dim=1)
        kl = (P * (torch.log(P.clamp_min(1e-12)) - logp)).sum(1).mean() * T**2
        if hard is not None and self.alpha > 0:
            ce = -(hard * logp).sum(1) / hard.sum(1).clamp_min(1)
            return self.alpha * ce.mean() + (1 - self.alpha) * kl
        return kl

    def get_config_dict(self) -> dict:
        """``{"temperature", "alpha"}``: ``ListwiseKLLoss(q, d, **cfg)`` rebuilds the loss."""
        return {"temperature": self.temperature, "alpha": self.alpha}


class IdentityRegularizer(nn.Module):
    """``λ·Σ_a ‖M_a − M₀,a‖²_F`` over distinct adapters (a shared adapter counts once): keeps
    each adapter near its anchor (the identity, or the adapter it was warm-started from; see
    :meth:`ResidualAdapter.delta_norm`).

    Args:
        adapters: the adapters (``None`` entries and repeats are dropped).
        weight: ``λ`` (``identity_reg``).
    """

    def __init__(self, adapters: Iterable[ResidualAdapter | None], weight: float) -> None:
        super().__init__()
        self.adapters = nn.ModuleList(_distinct(adapters))
        self.weight = weight

    def forward(self) -> torch.Tensor:
        """Returns a 0-dim float32 tensor."""
        return self.weight * sum(a.delta_norm() for a in self.adapters)

    def get_config_dict(self) -> dict:
        """``{"weight"}``: ``IdentityRegularizer(adapters, **cfg)`` rebuilds it."""
        return {"weight": self.weight}


class BlendedLoss(nn.Module):
    """Hybrid objective ``(1 − w)·L_homeostatic + w·L_teacher`` (``w = teacher_weight``).

    ``w = 0`` (or no teacher) never evaluates the teacher term and ``w = 1`` (or no
    homeostatic term) never evaluates the homeostatic one; a skipped term counts as 0.

    Args:
        homeostatic: e.g. :class:`VectorCosineLoss` or :class:`ListwiseKLLoss`, or ``None``.
        teacher: typically :class:`ListwiseKLLoss` on teacher rankings, or ``None``.
        teacher_weight: ``w``.
    """

    def __init__(self, homeostatic: nn.Module | None, teacher: nn.Module | None, teacher_weight: float) -> None:
        super().__init__()
        self.homeostatic, self.teacher = homeostatic, teacher
        self.teacher_weight = float(teacher_weight)

    def forward(self, homeostatic_batch: tuple | None, teacher_batch: tuple | None) -> torch.Tensor:
        """Each batch is the argument tuple of its term's ``forward`` (``None``: no rows).
        Returns a 0-dim float32 tensor."""
        w = self.teacher_weight
        use_t = self.teacher is not None and teacher_batch is not None and w > 0
        use_h = self.homeostatic is not None and homeostatic_batch is not None and w != 1.0
        lt = self.teacher(*teacher_batch) if use_t else torch.zeros(())
        lh = self.homeostatic(*homeostatic_batch) if use_h else torch.zeros(())
        return (1 - w) * lh + w * lt

    def get_config_dict(self) -> dict:
        """``{"teacher_weight"}``: ``BlendedLoss(h, t, **cfg)`` rebuilds it (the terms carry
        their own configs)."""
        return {"teacher_weight": self.teacher_weight}


# --------------------------------------------------------------------------- data and batches


class ListwiseData:
    """:class:`ListwiseTargets` and the raw document matrix ``docs (N, d)`` as tensors;
    ``take(idx)`` gives the :class:`ListwiseKLLoss` arguments ``(Q, D, cand, P, hard)`` of
    rows ``idx`` (``(b,)`` int64, numpy or torch)."""

    def __init__(self, data: ListwiseTargets, docs: np.ndarray) -> None:
        self.Q = torch.from_numpy(np.ascontiguousarray(data.queries, dtype=np.float32))
        self.D = torch.from_numpy(np.ascontiguousarray(docs, dtype=np.float32))
        self.C = None if data.candidates is None else torch.from_numpy(np.ascontiguousarray(data.candidates, dtype=np.int64))
        self.P = torch.from_numpy(np.ascontiguousarray(data.probs, dtype=np.float32))
        self.H = torch.from_numpy(data.hard.astype(np.float32)) if data.hard is not None else None

    def __len__(self) -> int:
        return len(self.Q)

    def full(self) -> tuple:
        return self.Q, self.D, self.C, self.P, self.H

    def take(self, idx) -> tuple:
        i = torch.as_tensor(idx)
        return self.Q[i], self.D, None if self.C is None else self.C[i], self.P[i], None if self.H is None else self.H[i]


class VectorData:
    """:class:`VectorTargets`; ``take(idx)`` gives the :class:`VectorCosineLoss` arguments
    ``(X, T, W, query_rows)`` of rows ``idx`` (``(b,)`` int64 numpy) as float32/bool tensors."""

    def __init__(self, data: VectorTargets) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def full(self) -> tuple:
        return self.take(np.arange(len(self.data)))

    def take(self, idx) -> tuple:
        v = self.data
        X = torch.from_numpy(v.inputs[idx].astype(np.float32))
        T = torch.from_numpy(v.targets[idx].astype(np.float32))
        W = None if v.weights is None else torch.from_numpy(v.weights[idx].astype(np.float32))
        return X, T, W, None if v.query_rows is None else torch.from_numpy(v.query_rows[idx])


class ShuffledBatches:
    """One pass per epoch over ``source`` (:class:`ListwiseData` or :class:`VectorData`) in
    a fresh ``rng.permutation`` order, in consecutive batches of ``batch_size`` rows."""

    def __init__(self, source: ListwiseData | VectorData, batch_size: int) -> None:
        self.source, self.batch_size = source, batch_size

    def full(self) -> tuple:
        return self.source.full()

    def epoch(self, rng: np.random.Generator) -> Iterator[tuple]:
        order = rng.permutation(len(self.source))
        for i in range(0, len(order), self.batch_size):
            yield self.source.take(order[i : i + self.batch_size])


class BlendedBatches:
    """Batches for :class:`BlendedLoss`: ``(homeostatic_batch, teacher_batch)`` pairs.

    An epoch has ``max(1, ⌈max(n_h, n_t)/batch_size⌉)`` steps. Homeostatic rows follow one
    ``rng.permutation(n_h)`` per epoch, step ``s`` taking up to ``batch_size`` rows from
    offset ``(s·batch_size) mod n_h``; teacher rows are drawn with replacement,
    ``rng.integers(0, n_t, min(batch_size, n_t))`` per step (drawn even when the loss will
    not use them, so the homeostatic order does not depend on ``w``).
    """

    def __init__(self, homeostatic: ListwiseData | VectorData | None, teacher: ListwiseData | None, batch_size: int) -> None:
        self.homeostatic, self.teacher, self.batch_size = homeostatic, teacher, batch_size
        self.n_h = len(homeostatic) if homeostatic is not None else 0
        self.n_t = len(teacher) if teacher is not None else 0

    def full(self) -> tuple:
        return (self.homeostatic.full() if self.n_h else None, self.teacher.full() if self.teacher is not None else None)

    def epoch(self, rng: np.random.Generator) -> Iterator[tuple]:
        bs, n_h, n_t = self.batch_size, self.n_h, self.n_t
        h_order = rng.permutation(n_h) if n_h else None
        for step in range(max(1, int(np.ceil(max(n_h, n_t) / bs)))):
            h_batch = self.homeostatic.take(h_order[(step * bs) % n_h :][:bs]) if n_h else None
            tidx = torch.from_numpy(rng.integers(0, n_t, size=min(bs, n_t))) if n_t else torch.arange(0)
            yield h_batch, self.teacher.take(tidx) if self.teacher is not None else None


# --------------------------------------------------------------------------- the training loop


def _distinct(adapters: Iterable[ResidualAdapter | None]) -> list[ResidualAdapter]:
    return list({id(a): a for a in adapters if a is not None}.values())


def _step(opt, loss: torch.Tensor) -> None:
    """One optimiser step; a non-finite loss aborts with :class:`AdaptationError`."""
    if not torch.isfinite(loss):
        raise AdaptationError("training loss became non-finite; cycle aborted")
    opt.zero_grad()
    loss.backward()
    opt.step()


def fit(
    q_adapter: ResidualAdapter | None,
    d_adapter: ResidualAdapter | None,
    loss: nn.Module,
    batches: Batches,
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    identity_reg: float,
    seed: int,
    early_stop: Callable[[int], bool] | None = None,
) -> TrainResult:
    """The one training loop: AdamW on the distinct adapters (a shared adapter counts once)
    minimising ``loss(*batch) + IdentityRegularizer(adapters, identity_reg)()``.

    Seeds ``torch.manual_seed(seed)`` and a numpy ``PCG64(seed)`` generator that
    ``batches.epoch`` draws from. ``loss_before``/``curve`` (one value per epoch) and
    ``loss_after`` are the objective on ``batches.full()`` (``loss_after = loss_before`` if
    no epoch ran). ``early_stop(epoch) -> bool`` is called after each epoch (e.g. a
    validation check on a dev split); True stops training.

    Raises:
        AdaptationError: the loss became non-finite.
    """
    torch.manual_seed(seed)
    rng = np.random.Generator(np.random.PCG64(seed))
    adapters = _distinct((q_adapter, d_adapter))
    opt = torch.optim.AdamW([p for a in adapters for p in a.parameters()], lr=lr, weight_decay=weight_decay)
    reg = IdentityRegularizer(adapters, identity_reg)

    def objective(batch: tuple) -> torch.Tensor:
        return loss(*batch) + reg()

    def full_loss() -> float:
        with torch.no_grad():
            return float(objective(batches.full()))

    before = full_loss()
    curve = []
    for epoch in range(epochs):
        for batch in batches.epoch(rng):
            _step(opt, objective(batch))
        curve.append(full_loss())
        if early_stop is not None and early_stop(epoch):
            break
    return TrainResult(before, curve[-1] if curve else before, curve)


def fit_listwise(
    q_adapter: ResidualAdapter | None,
    d_adapter: ResidualAdapter | None,
    data: ListwiseTargets,
    docs: np.ndarray,
    *,
    temperature: float,
    batch_size: int,
    alpha: float = 0.0,
    **fit_kwargs,
) -> TrainResult:
    """Train query-side and/or doc-side adapters (the same object for a shared adapter)
    with :class:`ListwiseKLLoss` on ``data`` against raw ``docs (N, d) float32``, in
    shuffled batches of ``batch_size`` queries (:class:`ShuffledBatches`). ``fit_kwargs``
    are :func:`fit`'s keywords (``epochs``, ``lr``, ``weight_decay``, ``identity_reg``,
    ``seed``, optional ``early_stop``).

    Raises:
        AdaptationError: non-finite inputs or loss, or fewer than 2 queries.
    """
    _check_finite("listwise targets", data.queries, data.probs, docs)
    if len(data) < 2:
        raise AdaptationError(f"need at least 2 training queries, got {len(data)}")
    loss = ListwiseKLLoss(q_adapter, d_adapter, temperature, alpha)
    return fit(q_adapter, d_adapter, loss, ShuffledBatches(ListwiseData(data, docs), batch_size), **fit_kwargs)


def fit_blend(
    q_adapter: ResidualAdapter | None,
    d_adapter: ResidualAdapter | None,
    homeostatic: VectorTargets | ListwiseTargets | None,
    teacher: ListwiseTargets | None,
    docs: np.ndarray,
    *,
    teacher_weight: float,
    temperature: float,
    batch_size: int,
    **fit_kwargs,
) -> TrainResult:
    """Train on :class:`BlendedLoss` ``(1 − w)·L_homeostatic + w·L_teacher``
    (``w = teacher_weight``) with :class:`BlendedBatches` (one mini-batch from each per
    step); raw ``docs (N, d) float32``. ``fit_kwargs`` are :func:`fit`'s keywords.

    ``L_homeostatic`` is :class:`VectorCosineLoss` for vector targets or
    :class:`ListwiseKLLoss` (hard labels ignored) for listwise ones; ``L_teacher`` the
    listwise KL to teacher rankings. Listwise homeostatic targets without a teacher term
    (``teacher`` is None or ``w = 0``) go to :func:`fit_listwise` (batches of at most 64).

    Raises:
        AdaptationError: non-finite inputs or loss.
    """
    if (teacher is None or teacher_weight == 0.0) and not isinstance(homeostatic, VectorTargets):
        return fit_listwise(q_adapter, d_adapter, homeostatic, docs, temperature=temperature, batch_size=min(batch_size, 64), **fit_kwargs)
    if teacher is not None:
        _check_finite("teacher targets", teacher.queries, teacher.probs, docs)
    else:
        teacher_weight = 0.0
    if isinstance(homeostatic, VectorTargets):
        _check_finite("vector targets", homeostatic.inputs, homeostatic.targets, homeostatic.weights)
        h_loss, h_data = VectorCosineLoss(q_adapter, d_adapter), VectorData(homeostatic)
    elif homeostatic is not None:
        h_loss, h_data = ListwiseKLLoss(q_adapter, d_adapter, temperature), ListwiseData(homeostatic, docs)
    else:
        h_loss = h_data = None
    t_loss = ListwiseKLLoss(q_adapter, d_adapter, temperature) if teacher is not None else None
    t_data = ListwiseData(teacher, docs) if teacher is not None else None
    return fit(q_adapter, d_adapter, BlendedLoss(h_loss, t_loss, teacher_weight), BlendedBatches(h_data, t_data, batch_size), **fit_kwargs)
