"""Simulated position-biased clicks over a shown ranking, for measuring feedback training
against a known truth.

Model
=====

The position-based click model (Richardson et al., WWW 2007; Craswell et al., WSDM 2008), in
the form Joachims, Swaminathan & Schnabel use to simulate clicks ("Unbiased Learning-to-Rank
with Biased Feedback", WSDM 2017, §6): a user shown a ranking examines the document at rank
``r`` with probability (the *propensity*)

    p_r = (1 / r)^η                 (η ≥ 0; η = 1 in most of their experiments)

and, having examined it, clicks it with probability ``ε+`` if it is relevant and ``ε−`` if it
is not (click noise). Examination and clicks are independent across ranks and sessions, so
``P(click at r) = p_r · ε±``. Only examined documents can be clicked: a relevant document
shown low is clicked less often than the same document shown at rank 1 — the position bias
that inverse-propensity weighting (``feedback.propensity = "position"``,
:mod:`antigravity.adaptation.feedback_training`) removes in expectation, and that a relevant
document never shown (``r > k``) can never reveal.

A click becomes a feedback row ``{"query", "doc_id", "relevance": 1, "source": "click",
"rank": r}`` (the keys :meth:`antigravity.serving.feedback.FeedbackStore.add_many` reads).
Skipped documents give no row: "shown and not clicked" is weak evidence under position bias,
and unjudged candidates are already the negatives of the feedback objective.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, Mapping, Sequence

import numpy as np

from antigravity.core.errors import ConfigurationError


def _real(name: str, value: Any, lo: float, hi: float = math.inf, *, lo_open: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, Real) and math.isfinite(float(value))
    ok = ok and (float(value) > lo if lo_open else float(value) >= lo) and float(value) <= hi
    if not ok:
        rng = f"{'(' if lo_open else '['}{lo}, {hi}]" if math.isfinite(hi) else (f"> {lo}" if lo_open else f">= {lo}")
        raise ConfigurationError(f"click model {name} = {value!r}: must be a finite real number {'in ' if math.isfinite(hi) else ''}{rng}")
    return float(value)


def position_propensity(ranks: Any, eta: float = 1.0) -> np.ndarray:
    """Examination propensities ``p_r = r^(−η)`` of 1-based ``ranks`` (an int or an array of
    ints ≥ 1) as a float64 array of the same shape (Joachims et al. 2017, §6).

    Raises:
        ConfigurationError: ``eta`` not a finite real ≥ 0, or a rank < 1.
    """
    eta = _real("eta", eta, 0.0)
    r = np.asarray(ranks, dtype=np.float64)
    if r.size and (not np.all(np.isfinite(r)) or r.min() < 1):
        raise ConfigurationError(f"ranks must be >= 1 (1 = top), got min {r.min()!r}")
    return np.power(r, -eta)


def simulate_clicks(shown: Mapping[str, Sequence[str]], relevant: Mapping[str, Any], queries: Mapping[str, str], *, sessions: int = 1,
                    eta: float = 1.0, eps_pos: float = 1.0, eps_neg: float = 0.1, seed: int | np.random.Generator = 0) -> list[dict[str, Any]]:
    """Click rows of ``sessions`` simulated users per query under the position-based model (module doc).

    Args:
        shown: ``{qid: [doc_id, ...]}`` — the ranking each session is shown, best first (rank 1).
        relevant: ``{qid: collection of relevant doc ids}`` (a qrels dict works: documents with a
            grade ≥ 1 count as relevant); a query missing here has no relevant document.
        queries: ``{qid: text}`` (the row's ``query``).
        sessions: sessions per query (int ≥ 1); every session sees the same ranking.
        eta: ``η`` of ``p_r = r^(−η)`` (≥ 0; 0 = no position bias).
        eps_pos, eps_neg: click probability of an examined relevant / non-relevant document, in [0, 1].
        seed: an int seed or a ``numpy.random.Generator``; queries are drawn in sorted-qid
            order, one ``(sessions, k)`` uniform block each, so a seed fixes every click.

    Returns:
        One row per click event, ``{"query", "doc_id", "relevance": 1, "source": "click",
        "rank"}``, in (qid, session, rank) order — the same (query, document) clicked in several
        sessions gives several rows (the feedback store keeps the last one).

    Raises:
        ConfigurationError: an invalid parameter, a qid of ``shown`` without a text, or a
            ranking that repeats a document.
    """
    if isinstance(sessions, bool) or not isinstance(sessions, Integral) or int(sessions) < 1:
        raise ConfigurationError(f"click model sessions = {sessions!r}: must be an integer >= 1")
    eta = _real("eta", eta, 0.0)
    eps_pos, eps_neg = _real("eps_pos", eps_pos, 0.0, 1.0), _real("eps_neg", eps_neg, 0.0, 1.0)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for qid in sorted(shown):
        docs = list(shown[qid])
        if len(set(docs)) != len(docs):
            raise ConfigurationError(f"shown ranking of query {qid!r} repeats a document")
        if qid not in queries:
            raise ConfigurationError(f"query {qid!r} is shown but has no text in queries")
        if not docs:
            continue
        rel = relevant.get(qid, ())
        is_rel = np.array([(rel.get(d, 0) >= 1) if isinstance(rel, Mapping) else (d in rel) for d in docs])
        p_click = position_propensity(np.arange(1, len(docs) + 1), eta) * np.where(is_rel, eps_pos, eps_neg)
        clicked = rng.random((int(sessions), len(docs))) < p_click
        for _, r in zip(*np.nonzero(clicked)):
            rows.append({"query": queries[qid], "doc_id": docs[r], "relevance": 1, "source": "click", "rank": int(r) + 1})
    return rows
