"""Label-free homeostatic signals: query traffic → correction targets for the adapter.

A signal definition reads only what ``search`` recorded (raw query vectors, their top-k
document ids and scores) and the stored raw document vectors — never labels. It returns
:class:`~antigravity.adaptation.training.VectorTargets` (rows and where they should move) or
:class:`~antigravity.adaptation.training.ListwiseTargets` (score distributions to match) plus the side
the adapter acts on (``"doc"``, ``"query"`` or ``"both"``).

What "unhealthy" means here, measurably:

* **hubness** (Radovanović et al., JMLR 2010): documents that occur in far more top-k lists
  than their share (k-occurrence ``N_k``) crowd out others. Target: push each hub away
  from the centroid of the queries that retrieve it, ``t = unit(d − β·log2(1 + N_k/m)·c)``,
  only for ``N_k ≥ m``; queries are anchored to themselves.
* **anisotropy** (Ethayarajh 2019; Mu & Viswanath 2018, "all-but-the-top"): a dominant
  common direction ``u`` (top principal direction of served vectors) compresses cosine
  scores. Target: ``t = unit(x − λ·(x·u)·u)`` for documents and traffic queries.
* **modality gap** (Liang et al. 2022, "Mind the Gap"): traffic queries (short claims) sit in
  a different region of the sphere than the documents they retrieve, which compresses
  query-document cosines. Target, query side only: ``t_q = unit(q + η·(μ_d − μ_q))`` where
  ``μ_q`` is the mean traffic query and ``μ_d`` the mean of the documents in their top-10.
  Documents are untouched (no re-materialisation).
* **pseudo-relevance structure** (Rocchio 1971; Lavrenko & Croft 2001): queries whose top-k
  scores are nearly indistinguishable (low ``s_1 − s_10`` margin) get a listwise target from
  an amortised Rocchio query ``unit(q + α·mean(top-3))``, sharpened at temperature ``τ``.

Which definition is the default, and why, is measured in ``docs/homeostasis.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Protocol

import numpy as np

from antigravity.adaptation.training import ListwiseTargets, VectorTargets

Side = Literal["doc", "query", "both"]


@dataclass
class Traffic:
    """Recorded traffic as arrays. ``queries`` ``(m, d)`` and ``docs`` ``(N, d)`` float32 are
    in the *served* space of the current version (targets are computed there);
    ``raw_queries``/``raw_docs`` are the raw student vectors the adapter is trained on (equal
    to the served ones under the frozen student). ``top`` ``(m, k) int64`` row indices into
    ``docs`` (−1 where a hit is unknown), ``scores`` ``(m, k) float32``."""

    queries: np.ndarray
    top: np.ndarray
    scores: np.ndarray
    docs: np.ndarray
    texts: list[str | None] | None = None
    raw_queries: np.ndarray | None = None
    raw_docs: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.raw_queries is None:
            self.raw_queries = self.queries
        if self.raw_docs is None:
            self.raw_docs = self.docs


@dataclass
class Targets:
    """What a signal asks the adapter to learn, and on which side it acts."""

    side: Side
    vector: VectorTargets | None = None
    listwise: ListwiseTargets | None = None
    teacher: ListwiseTargets | None = None  # hybrid mode: teacher rankings on the same traffic
    teacher_weight: float = 0.0

    @property
    def n(self) -> int:
        return len(self.vector) if self.vector is not None else len(self.listwise or [])


class SignalDefinition(Protocol):
    name: str
    recipe: dict  # training defaults: lr, epochs, batch_size, identity_reg

    def targets(self, traffic: Traffic, seed: int) -> Targets: ...


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def k_occurrence(top: np.ndarray, n_docs: int, k: int = 10) -> np.ndarray:
    """``N_k`` per document: in how many of the traffic top-``k`` lists it appears, ``(N,) int``."""
    t = top[:, :k]
    return np.bincount(t[t >= 0].ravel(), minlength=n_docs)


def hubness_skew(top: np.ndarray, n_docs: int, k: int = 10) -> float:
    """Skewness of the k-occurrence distribution (Radovanović et al. 2010); 0 = no hubs."""
    nk = k_occurrence(top, n_docs, k).astype(np.float64)
    sd = nk.std()
    return float(((nk - nk.mean()) ** 3).mean() / sd**3) if sd > 0 else 0.0


@dataclass
class Hubness:
    """Push hubs away from the centroid of the queries that retrieve them (see module doc)."""

    beta: float = 0.1
    min_occurrence: int = 3
    k: int = 10
    name: str = "hubness"
    recipe = {"lr": 3e-3, "epochs": 20, "batch_size": 512, "identity_reg": 1e-3}

    def targets(self, traffic: Traffic, seed: int) -> Targets:
        D, Q, top = traffic.docs, traffic.queries, traffic.top[:, : self.k]
        nk = k_occurrence(top, len(D), self.k)
        csum = np.zeros_like(D)
        rows = np.repeat(np.arange(len(Q)), top.shape[1])
        valid = top.ravel() >= 0
        np.add.at(csum, top.ravel()[valid], Q[rows[valid]])
        sel = np.where(nk >= self.min_occurrence)[0]
        T = D.copy()
        strength = self.beta * np.log2(1 + nk[sel] / self.min_occurrence)
        T[sel] = _unit(D[sel] - strength[:, None] * _unit(csum[sel]))
        X = np.concatenate([traffic.raw_docs, traffic.raw_queries])
        TT = np.concatenate([T, Q])
        return Targets("both", vector=VectorTargets(X, TT, query_rows=np.r_[np.zeros(len(D), bool), np.ones(len(Q), bool)]))


@dataclass
class Anisotropy:
    """Shrink the dominant common direction of served vectors by ``lam`` (see module doc)."""

    lam: float = 0.25
    name: str = "anisotropy"
    recipe = {"lr": 3e-3, "epochs": 20, "batch_size": 512, "identity_reg": 1e-3}

    def targets(self, traffic: Traffic, seed: int) -> Targets:
        D, Q, top = traffic.docs, traffic.queries, traffic.top[:, :10]
        served = np.concatenate([Q, D[np.unique(top[top >= 0])]])
        u = np.linalg.svd(served - served.mean(0), full_matrices=False)[2][0]
        S = np.concatenate([D, Q])
        X = np.concatenate([traffic.raw_docs, traffic.raw_queries])
        T = _unit(S - self.lam * (S @ u)[:, None] * u[None])
        return Targets("both", vector=VectorTargets(X, T, query_rows=np.r_[np.zeros(len(D), bool), np.ones(len(Q), bool)]))


@dataclass
class PseudoRelevance:
    """Listwise target from an amortised Rocchio query on low-margin traffic (see module doc)."""

    alpha: float = 0.3
    tau: float = 0.05
    frac: float = 1.0
    k: int = 50
    side: Side = "doc"
    name: str = "pseudo_relevance"
    recipe = {"lr": 1e-3, "epochs": 20, "batch_size": 32, "identity_reg": 1e-3}

    def targets(self, traffic: Traffic, seed: int) -> Targets:
        D, Q = traffic.docs, traffic.queries
        s = Q @ D.T
        cand = np.argsort(-s, axis=1)[:, : self.k]
        sc = np.take_along_axis(s, cand, 1)
        margin = sc[:, 0] - sc[:, min(9, self.k - 1)]
        sel = margin <= np.quantile(margin, self.frac)
        Qs, cand = Q[sel], cand[sel]
        qe = _unit(Qs + self.alpha * D[cand[:, :3]].mean(1))
        z = np.einsum("bd,bkd->bk", qe, D[cand]) / self.tau
        P = np.exp(z - z.max(1, keepdims=True))
        P /= P.sum(1, keepdims=True)
        return Targets(self.side, listwise=ListwiseTargets(traffic.raw_queries[sel], cand, P.astype(np.float32)))


@dataclass
class ModalityGap:
    """Shift traffic queries toward the region of the documents they retrieve (see module doc)."""

    eta: float = 1.0
    k: int = 10
    name: str = "modality_gap"
    recipe = {"lr": 3e-3, "epochs": 200, "batch_size": 1024, "identity_reg": 1e-3}  # full batch: same dev NDCG as 64, ~8x fewer steps

    def targets(self, traffic: Traffic, seed: int) -> Targets:
        Q, top = traffic.queries, traffic.top[:, : self.k]
        docs = np.unique(top[top >= 0])
        mu_d = traffic.docs[docs].mean(0) if len(docs) else Q.mean(0)
        T = _unit(Q + self.eta * (mu_d - Q.mean(0))[None])
        return Targets("query", vector=VectorTargets(traffic.raw_queries, T, query_rows=np.ones(len(Q), bool)))


SIGNALS: dict[str, Callable[[], SignalDefinition]] = {
    "modality_gap": ModalityGap,
    "hubness": Hubness,
    "anisotropy": Anisotropy,
    "pseudo_relevance": PseudoRelevance,
}


def get_signal(name: str) -> SignalDefinition:
    """Instantiate a registered signal definition. Raises :class:`ConfigurationError`."""
    from antigravity.core.errors import ConfigurationError

    if name not in SIGNALS:
        raise ConfigurationError(f"adaptation.signal = {name!r}: unknown signal; choose from {', '.join(SIGNALS)}")
    return SIGNALS[name]()
