"""Training the adapter from stored relevance feedback, blended with the teacher.

``engine.train_on_feedback()`` (:meth:`antigravity.modes.runner.AdaptationRunner.train_on_feedback`)
reads the feedback store and hands :func:`run_feedback_training` the judged queries
(objects with ``query``, ``key`` and ``judgments = {doc_id: grade}``, e.g.
:class:`antigravity.serving.feedback.FeedbackQuery`; this module never imports serving).

Objective (per training query, over its candidates ``C`` = the student's top-``K`` ∪ its
judged documents, padded with the next student-ranked documents to one width)::

    loss = α·CE(p_feedback, softmax(s/T)) + (1 − α)·T²·KL(p_teacher ‖ softmax(s/T))

with ``s_c = cos(f_q(q), f_d(d_c))`` (:class:`~antigravity.adaptation.training.ListwiseKLLoss`).

* **Hard term** — ListNet's top-one cross-entropy (Cao et al., "Learning to Rank: From
  Pairwise Approach to Listwise Approach", ICML 2007) with the target top-one distribution
  built from the grades by the NDCG gain ``φ(g) = 2^g − 1`` (Järvelin & Kekäläinen 2002):
  ``p_feedback(c) = (2^{g_c} − 1) / Σ_c' (2^{g_c'} − 1)``. Grade 0 (shown, not relevant)
  and unjudged candidates get no mass (they are the negatives); a grade-3 document gets 7×
  the mass of a grade-1 one. A query whose judged documents are all grade 0 contributes
  only to the soft term. (A softmax over grades was not used: ``exp(0) = 1`` would give every
  unjudged candidate as much mass as a grade-0 one and, with ``K = 100``, most of the mass.)
* **Soft term** — the teacher's ranking of the same candidates, ``softmax(cos_teacher/T)``
  (as :func:`~antigravity.adaptation.distillation.teacher_targets`). With ``α = 1`` it has
  weight 0 and the teacher is never resolved or called; with ``α = 0`` the hard labels are
  not used at all (the result equals training on the soft targets alone, same seed).

**Position bias** (``propensity = "position"``). A click is biased evidence: a document
shown at rank ``r`` is examined — and so can be clicked — with probability ``p_r``, so
relevant documents shown low are under-counted (the position-based model of
:mod:`antigravity.clicks`). Inverse-propensity weighting (Joachims, Swaminathan & Schnabel,
"Unbiased Learning-to-Rank with Biased Feedback", WSDM 2017) multiplies each click's gain in
the hard target by ``w = min(1 / p_r, clip)`` with ``p_r = r^(−η)`` (a click at rank 5 with
``η = 1`` weighs 5×), so that in expectation every relevant document shown gets the same
mass wherever it was shown. Clipping the weight bounds the variance that small propensities
cause, at the price of some bias (Strehl, Langford, Li & Kakade, "Learning from Logged
Implicit Exploration Data", NeurIPS 2010; Joachims et al. 2017 §5). Only rows whose latest
source is ``click`` are reweighted (judgments and qrels are not position-biased); a click
without a recorded rank weighs 1 (counted in ``metrics["n_click_rows_unknown_rank"]``). The
target stays normalised per query, so the weights move mass between a query's clicked
documents — they do not reweight queries against each other as the unbiased risk estimate
of Joachims et al. does (the listwise loss divides by each query's total target mass).
``propensity = "none"`` (the default) leaves the target exactly as without this option.

**Gate.** A deterministic slice of the feedback queries — :func:`~antigravity.adaptation.gates.split_held_out`
on the query keys with ``holdout_fraction`` (the same stable hash the label-free gate uses
for traffic; paraphrases of a held-out query are dropped from training too) — is never
trained on. Its judgments with grade ≥ 1 are the qrels of a :class:`FeedbackGate` (a
:class:`~antigravity.adaptation.gates.DevSetGate` on raw student query vectors): the
candidate is promoted only if its held-out NDCG@10 beats the served version's by more than
``gate.min_gain`` with a one-sided paired t-test ``p < feedback.gate_alpha`` (0.05; the
label-free gate's rule at a stricter level), so noise feedback, which moves rankings at random, is not promoted. Fewer held-out
queries with a relevant stored document than ``gate.min_queries`` (the label-free gate's
minimum, default 20; at least 2): rejected before training ("cannot gate") — on 4 held-out
queries a one-sided p < 0.05 promoted a candidate that lost on test (docs/feedback.md). Feedback training is always gated (``gate.enabled`` does not switch it off).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Callable, Sequence

import numpy as np

from antigravity.adaptation.adapter import ResidualAdapter
from antigravity.adaptation.context import AdaptationContext, AdaptationReport
from antigravity.adaptation.distillation import TeacherDistillationHelper, validate_temperature
from antigravity.adaptation.gates import DevSetGate, GateDecision, paired_gain, ranked_run, split_held_out, top_rows
from antigravity.adaptation.training import ListwiseTargets, TrainResult, fit_listwise
from antigravity.clicks import position_propensity
from antigravity.core.errors import AdaptationError, ConfigurationError
from antigravity.evaluation import evaluate_per_query

logger = logging.getLogger(__name__)

SOURCE = "feedback"
PROPENSITIES: tuple[str, ...] = ("none", "position")


@dataclass
class FeedbackConfig:
    """Training hyper-parameters (the objective's ``α``, ``T``, ``K`` are arguments of
    :func:`run_feedback_training`). ``rank``: adapter rank (``None``: ``adaptation.rank``);
    adapters are warm-started from the served ones.

    ``train_documents``: also train the document adapter (``False``: only the query adapter
    moves; documents stay where the served version put them). ``other_positives``: up to this
    many documents judged relevant for *other* training queries join each query's candidates
    (grade 0 unless judged for it), so the hard term cannot be lowered by raising every judged
    document at once (0 = off).

    The defaults were chosen on SciFact TRAIN feedback only — 20 % of the TRAIN queries held out
    at random, 3 seeds, by the held-out NDCG@10 gain on queries whose relevant documents the
    fit part never judged (``benchmarks/feedback_generalisation.py``; the recipe ``epochs``,
    ``lr``, ``identity_reg`` by ``benchmarks/feedback_scifact.py --sweep``). Query-only with
    other positives lost least there (−0.032 against −0.060 for query+document adapters); see
    docs/feedback.md for the test numbers."""

    rank: int | None = None
    epochs: int = 10
    lr: float = 3e-3
    batch_size: int = 32
    weight_decay: float = 0.0
    identity_reg: float = 1e-2
    train_documents: bool = False
    other_positives: int = 100


def validate_seed(seed: Any) -> int:
    """``seed`` must be an ``int >= 0`` (not ``bool``); raises :class:`ConfigurationError`."""
    if isinstance(seed, bool) or not isinstance(seed, Integral) or int(seed) < 0:
        raise ConfigurationError(f"seed = {seed!r}: must be an integer >= 0")
    return int(seed)


def validate_alpha(alpha: Any) -> float:
    """``α`` must be a real number in [0, 1] (``bool``, NaN and inf refused); raises :class:`ConfigurationError`."""
    if isinstance(alpha, bool) or not isinstance(alpha, Real) or not math.isfinite(float(alpha)) or not 0.0 <= float(alpha) <= 1.0:
        raise ConfigurationError(f"feedback alpha = {alpha!r}: must be a real number in [0, 1]")
    return float(alpha)


def validate_holdout_fraction(f: Any) -> float:
    if isinstance(f, bool) or not isinstance(f, Real) or not math.isfinite(float(f)) or not 0.0 < float(f) < 1.0:
        raise ConfigurationError(f"feedback holdout_fraction = {f!r}: must be a number in (0, 1)")
    return float(f)


def validate_candidates(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, Integral) or int(k) < 1:
        raise ConfigurationError(f"feedback candidates = {k!r}: must be an integer >= 1")
    return int(k)


def validate_propensity(propensity: Any, eta: Any, clip: Any) -> tuple[str, float, float]:
    """``(propensity, η, clip)``: ``propensity`` one of :data:`PROPENSITIES`, ``η`` a finite
    real > 0, ``clip`` a real ≥ 1 (``inf``: no clipping; ``bool``/NaN refused). Raises
    :class:`ConfigurationError` naming the first bad value."""
    if not isinstance(propensity, str) or propensity not in PROPENSITIES:
        raise ConfigurationError(f"feedback propensity = {propensity!r}: must be one of {', '.join(PROPENSITIES)}")
    if isinstance(eta, bool) or not isinstance(eta, Real) or not math.isfinite(float(eta)) or float(eta) <= 0:
        raise ConfigurationError(f"feedback propensity_eta = {eta!r}: must be a finite real number > 0")
    if isinstance(clip, bool) or not isinstance(clip, Real) or math.isnan(float(clip)) or float(clip) < 1:
        raise ConfigurationError(f"feedback propensity_clip = {clip!r}: must be a real number >= 1 (inf: no clipping)")
    return propensity, float(eta), float(clip)


def click_weights(clicks: dict[str, int | None], *, eta: float, clip: float) -> tuple[dict[str, float], dict[str, int]]:
    """Inverse-propensity weights ``{doc_id: min(1 / p_r, clip)}`` of click rows ``{doc_id:
    rank}`` with ``p_r = r^(−η)`` (:func:`antigravity.clicks.position_propensity`); a click
    without a rank (``None``) weighs 1. Also returns counts ``{"n_click_rows",
    "n_click_rows_unknown_rank", "n_click_rows_clipped"}``."""
    out, unknown, clipped = {}, 0, 0
    for d, r in clicks.items():
        if r is None:
            out[d], unknown = 1.0, unknown + 1
            continue
        w = 1.0 / float(position_propensity(r, eta))
        clipped += w > clip
        out[d] = min(w, clip)
    return out, {"n_click_rows": len(clicks), "n_click_rows_unknown_rank": unknown, "n_click_rows_clipped": int(clipped)}


def usable_queries(feedback_queries: Sequence[Any], doc_ids: Sequence[str]) -> list[tuple[str, str, dict[str, int]]]:
    """``(key, text, judgments)`` of the queries with at least one judged document still
    stored (judgments restricted to stored documents), sorted by key."""
    stored = set(doc_ids)
    out = {}
    for q in feedback_queries:
        j = {d: int(g) for d, g in q.judgments.items() if d in stored}
        if j and q.query and q.query.strip():
            out[q.key] = (q.key, q.query, j)
    return [out[k] for k in sorted(out)]


def split_feedback(keys: Sequence[str], fraction: float, salt: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, held)`` of ``keys``: :func:`~antigravity.adaptation.gates.split_held_out`
    (stable hash of the key; paraphrases of a held-out key are dropped from ``train``).
    ``salt`` (an int ≥ 0, e.g. a benchmark seed) draws another fixed hold-out per value;
    ``None`` (the default, what a deployment uses) is the unsalted assignment."""
    return split_held_out(list(keys), fraction, salt)


def feedback_distribution(grades: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """ListNet top-one targets from grades ``(m, K)`` (0 for unjudged): rows ∝ ``2^g − 1``,
    times ``weights (m, K)`` (inverse propensities, 1 = unweighted) when given; a row without
    a relevant candidate is all zeros (no hard signal). Returns ``(m, K) float32``."""
    gain = np.exp2(np.maximum(grades, 0).astype(np.float64)) - 1.0
    if weights is not None:
        gain = gain * np.asarray(weights, np.float64)
    tot = gain.sum(1, keepdims=True)
    return np.divide(gain, tot, out=np.zeros_like(gain), where=tot > 0).astype(np.float32)


def feedback_candidates(Sq: np.ndarray, D: np.ndarray, judged: Sequence[Sequence[int]], k: int) -> np.ndarray:
    """``(m, W) int64`` candidate rows: each query's judged documents first, then its
    student top-``k`` (raw cosine) and the next student-ranked documents up to a common width
    ``W = min(N, k + max judged)``."""
    n = len(D)
    width = min(n, k + max((len(j) for j in judged), default=0))
    order, _ = top_rows(Sq, D, min(n, width + max((len(j) for j in judged), default=0)))
    out = np.empty((len(Sq), width), np.int64)
    for i, rows in enumerate(judged):
        u = list(dict.fromkeys([*rows, *order[i, :k]]))[:width]
        seen = set(u)
        for r in order[i]:
            if len(u) >= width:
                break
            if r not in seen:
                u.append(int(r))
                seen.add(r)
        out[i] = u
    return out


def other_positive_candidates(judgments: Sequence[dict[int, int]], n: int, seed: int) -> np.ndarray:
    """``(m, W) int64``: for each query, ``W`` rows drawn without replacement (seeded) from the
    documents judged relevant (grade ≥ 1) for *other* queries of ``judgments`` and not judged
    for this one (so they are negatives, and no candidate is repeated); ``W = min(n, P − J)``
    with ``P`` the relevant documents of all queries and ``J`` the most any query judged.
    ``(m, 0)`` when ``n = 0`` or there is nothing to draw."""
    pos = np.array(sorted({r for j in judgments for r, g in j.items() if g >= 1}), np.int64)
    width = max(0, min(int(n), len(pos) - max((len(j) for j in judgments), default=0)))
    if width == 0:
        return np.zeros((len(judgments), 0), np.int64)
    rng = np.random.Generator(np.random.PCG64(seed))
    return np.stack([rng.choice(pos[~np.isin(pos, list(j))], size=width, replace=False) for j in judgments])


def build_feedback_targets(Sq: np.ndarray, D: np.ndarray, judgments: Sequence[dict[int, int]], *, k: int, alpha: float,
                           temperature: float, teacher_scores: Callable[[np.ndarray], np.ndarray] | None,
                           other_positives: int = 0, seed: int = 0, weights: Sequence[dict[int, float]] | None = None) -> ListwiseTargets:
    """:class:`ListwiseTargets` for raw query vectors ``Sq (m, d)``, documents ``D (N, d)``
    (the space the student top-``k`` is taken in) and per-query ``{doc row: grade}``: ``hard``
    = :func:`feedback_distribution` of the grades over the candidates (unused by the loss when
    ``α = 0``), each judged row's gain times its weight in ``weights`` (per-query ``{doc row:
    weight}``, 1 where absent; ``None``: unweighted); ``probs`` = the teacher's softmax over the
    candidates, ``teacher_scores(cand) -> (m, W)`` cosines (not called when ``α = 1``: ``probs``
    is then uniform and has weight 0). ``other_positives``: columns of
    :func:`other_positive_candidates` appended to the candidates (a document already among them
    is then a duplicate column: harmless for the listwise losses, which compare distributions
    column by column)."""
    cand = feedback_candidates(Sq, D, [list(j) for j in judgments], k)
    if other_positives:
        cand = np.concatenate([cand, other_positive_candidates(judgments, other_positives, seed)], axis=1)
    grades = np.array([[j.get(int(r), 0) for r in row] for j, row in zip(judgments, cand)], np.float32)
    W = None if weights is None else np.array([[w.get(int(r), 1.0) for r in row] for w, row in zip(weights, cand)], np.float64)
    hard = feedback_distribution(grades, W)  # kept at α = 0 too: the loss then ignores it (tested)
    if alpha < 1:
        z = np.asarray(teacher_scores(cand), np.float64) / temperature
        P = np.exp(z - z.max(1, keepdims=True))
        P /= P.sum(1, keepdims=True)
    else:
        P = np.full(cand.shape, 1.0 / cand.shape[1])
    return ListwiseTargets(Sq, cand, P.astype(np.float32), hard)


def candidate_adapters(current: tuple[Any, Any], dim: int, rank: int, seed: int, train_documents: bool = True) -> tuple[ResidualAdapter, ResidualAdapter | None]:
    """A query and a document adapter: clones of the served ones (anchored at their weights),
    fresh identity adapters where none is served; a served shared adapter stays shared.
    ``train_documents=False``: the document side is the served document adapter itself
    (``None`` = identity), not trained (a served shared adapter is then cloned for the query side only)."""
    import torch

    torch.manual_seed(seed)
    cur_q, cur_d = current
    if not train_documents:
        return (cur_q.clone() if cur_q is not None else ResidualAdapter(dim, rank)), cur_d
    if cur_q is not None and cur_q is cur_d:
        shared = cur_q.clone()
        return shared, shared
    q = cur_q.clone() if cur_q is not None else ResidualAdapter(dim, rank)
    d = cur_d.clone() if cur_d is not None else ResidualAdapter(dim, rank)
    return q, d


def train_feedback_adapters(current: tuple[Any, Any], data: ListwiseTargets, D: np.ndarray, *, alpha: float, temperature: float,
                            seed: int, config: FeedbackConfig, rank: int) -> tuple[ResidualAdapter, ResidualAdapter | None, TrainResult]:
    """Train warm-started adapters on ``data`` (raw documents ``D (N, d) float32``) with
    :class:`~antigravity.adaptation.training.ListwiseKLLoss` (``α``, ``T``). With
    ``config.train_documents = False`` only the query adapter is trained, against the documents
    as the served document adapter places them; the returned document adapter is that one."""
    q_ad, d_ad = candidate_adapters(current, D.shape[1], min(rank, D.shape[1]), seed, train_documents=config.train_documents)
    if config.train_documents:
        res = fit_listwise(q_ad, d_ad, data, D, temperature=temperature, alpha=alpha, batch_size=config.batch_size, epochs=config.epochs, lr=config.lr,
                           weight_decay=config.weight_decay, identity_reg=config.identity_reg, seed=seed)
    else:
        served_D = d_ad.transform(D) if d_ad is not None else D
        res = fit_listwise(q_ad, None, data, served_D, temperature=temperature, alpha=alpha, batch_size=config.batch_size, epochs=config.epochs, lr=config.lr,
                           weight_decay=config.weight_decay, identity_reg=config.identity_reg, seed=seed)
    return q_ad, d_ad, res


class FeedbackGate(DevSetGate):
    """A :class:`~antigravity.adaptation.gates.DevSetGate` on held-out feedback queries whose
    decision is the label-free gate's conservative rule: per-query NDCG@10 gain ``Δ`` of the
    candidate over the current version, promote iff ``mean Δ > min_gain`` and a one-sided
    paired t-test gives ``p < alpha`` (a tie, or a gain within noise, keeps the current version)."""

    name = "feedback_ndcg@10"

    def __init__(self, qids: list[str], vectors: np.ndarray, qrels: dict[str, dict[str, int]], *, min_gain: float = 0.0, alpha: float = 0.05,
                 never_seen: Sequence[str] = ()) -> None:
        super().__init__(qids, vectors, qrels)
        self.min_gain, self.alpha = min_gain, alpha
        #: held-out queries none of whose relevant documents the training feedback judged: their
        #: mean gain is reported (``delta_never_seen``) — how the candidate does on documents it never saw judged
        self.never_seen = np.array([q in set(never_seen) for q in qids], bool)

    def per_query(self, q_adapter, d_adapter, doc_ids: list[str], D: np.ndarray) -> np.ndarray:
        per = evaluate_per_query(self.qrels, ranked_run(self.qids, self.vectors, doc_ids, D, q_adapter, d_adapter))
        return np.array([per[q]["ndcg@10"] if q in per else 0.0 for q in self.qids])

    def decide(self, current: tuple, candidate: tuple, doc_ids: list[str], D: np.ndarray, **context: Any) -> GateDecision:
        a, b = self.per_query(*current, doc_ids, D), self.per_query(*candidate, doc_ids, D)
        diff = b - a
        delta, p = paired_gain(diff)
        ok = delta > self.min_gain and p < self.alpha
        n_new = int(self.never_seen.sum())
        d_new = float(diff[self.never_seen].mean()) if n_new else None
        new = f"; on the {n_new} whose relevant documents no training feedback judged: Δ {d_new:+.4f}" if n_new else ""
        why = (f"{self.name} {a.mean():.4f} -> {b.mean():.4f} (Δ {delta:+.4f}, one-sided p {p:.3g}, n {len(self.qids)} held-out feedback queries{new}; "
               f"promote if Δ > {self.min_gain} and p < {self.alpha})")
        return GateDecision(ok, why, float(a.mean()), float(b.mean()), {"n": len(self.qids), "delta": delta, "p": p, "n_never_seen": n_new, "delta_never_seen": d_new})


def run_feedback_training(
    ctx: AdaptationContext,
    feedback_queries: Sequence[Any],
    *,
    alpha: Any,
    temperature: Any,
    candidates: Any,
    holdout_fraction: Any,
    seed: Any,
    teacher: Any = None,
    config: FeedbackConfig | None = None,
    split_seed: Any = None,
    propensity: Any = "none",
    propensity_eta: Any = 1.0,
    propensity_clip: Any = 10.0,
) -> AdaptationReport:
    """Train a candidate ``(query_adapter, doc_adapter)`` on stored feedback (and, for
    ``α < 1``, the teacher's rankings) and gate it on held-out feedback (see the module doc).

    Validation, in this order, before anything is loaded or trained: ``seed`` (int ≥ 0),
    ``temperature`` (> 0), ``alpha`` (a real number in [0, 1]; ``bool``/NaN refused),
    ``holdout_fraction`` (in (0, 1)), ``candidates`` (int ≥ 1), ``propensity``,
    ``propensity_eta``, ``propensity_clip`` (:func:`validate_propensity`), a teacher when
    ``α < 1``, then at least 2 usable feedback queries (a judged document still stored).
    ``split_seed`` (None, or an int ≥ 0) salts the hold-out hash (:func:`split_feedback`):
    ``None`` keeps the fixed assignment; the benchmark passes its seed so that seeds vary
    which feedback queries gate.
    ``propensity = "position"`` weighs each training click by its inverse propensity (module
    doc); the objects in ``feedback_queries`` then give click ranks as ``clicks = {doc_id:
    rank}`` (absent: no click rows).

    Returns:
        ``AdaptationReport(source="feedback", ok=..., candidate=(q, d), metrics=...)``;
        ``metrics`` holds ``alpha``, ``n_feedback_queries``, ``n_train``, ``n_held_out``,
        ``train_keys``, ``held_out_keys``, losses and the gate's numbers; with ``propensity =
        "position"`` also ``n_click_rows``, ``n_click_rows_unknown_rank``,
        ``n_click_rows_clipped`` (training queries) and ``max_click_weight``. The caller promotes.

    Raises:
        ConfigurationError: an invalid argument, or ``α < 1`` without a teacher configured.
        AdaptationError: fewer than 2 usable feedback queries, or fewer than 2 to train on
            besides the held-out ones (nothing is changed).
        TeacherError: the teacher failed (``α < 1``).
    """
    seed = validate_seed(seed)
    temperature = validate_temperature(temperature)
    alpha = validate_alpha(alpha)
    holdout_fraction = validate_holdout_fraction(holdout_fraction)
    k = validate_candidates(candidates)
    split_seed = None if split_seed is None else validate_seed(split_seed)
    propensity, eta, clip = validate_propensity(propensity, propensity_eta, propensity_clip)
    settings = ctx.settings
    if alpha < 1 and teacher is None and ctx.teacher_source is None and not (settings.teacher.name or settings.teacher.base_url):
        raise ConfigurationError(f"feedback training with alpha = {alpha} < 1 needs a teacher: set teacher.name or teacher.base_url, or alpha = 1 (feedback alone)")
    cfg = config or FeedbackConfig()
    doc_ids, D = ctx.doc_ids, ctx.raw_docs
    usable = usable_queries(feedback_queries, doc_ids)
    if len(usable) < 2:
        raise AdaptationError(f"need at least 2 feedback queries with a judged document still stored, got {len(usable)}; nothing changed")
    t_start = time.perf_counter()
    train_idx, held_idx = split_feedback([u[0] for u in usable], holdout_fraction, split_seed)
    train, held = [usable[i] for i in train_idx], [usable[i] for i in held_idx]
    if len(train) < 2:
        raise AdaptationError(f"need at least 2 feedback queries to train on besides the {len(held)} held out for the gate, got {len(train)}; nothing changed")
    metrics: dict[str, Any] = {
        "alpha": alpha, "temperature": temperature, "candidates": k, "holdout_fraction": holdout_fraction, "seed": seed, "split_seed": split_seed,
        "n_feedback_queries": len(usable), "n_train": len(train), "n_held_out": len(held),
        "train_keys": [u[0] for u in train], "held_out_keys": [u[0] for u in held], "propensity": propensity,
    }
    current = ctx.current
    gated = [u for u in held if any(g >= 1 for g in u[2].values())]
    metrics["n_gate_queries"] = len(gated)
    need = max(2, int(settings.gate.min_queries))
    if len(gated) < need:
        why = (f"rejected: {FeedbackGate.name}: {len(gated)} held-out feedback queries with a relevant stored document (< gate.min_queries = {need}); "
               "cannot gate, kept the current version (not trained)")
        return AdaptationReport(None, False, why, source=SOURCE, ok=False, gate=FeedbackGate.name, metrics=metrics, current=current, candidate=None)
    row = {d: i for i, d in enumerate(doc_ids)}
    Sq = np.asarray(ctx.encoder.encode([u[1] for u in train]), np.float32)
    judgments = [{row[d]: g for d, g in u[2].items()} for u in train]
    weights = None
    if propensity == "position":
        clicks = {q.key: getattr(q, "clicks", None) or {} for q in feedback_queries}
        weights, counts = [], {"n_click_rows": 0, "n_click_rows_unknown_rank": 0, "n_click_rows_clipped": 0}
        for key, _, j in train:
            w, n = click_weights({d: r for d, r in clicks.get(key, {}).items() if d in j}, eta=eta, clip=clip)
            weights.append({row[d]: x for d, x in w.items()})
            counts = {c: counts[c] + n[c] for c in counts}
        metrics.update(propensity_eta=eta, propensity_clip=clip, **counts, max_click_weight=max((x for w in weights for x in w.values()), default=1.0))
    helper = None
    checkpoint: dict[str, Any] = {}
    try:
        teacher_scores = None
        if alpha < 1:
            helper = TeacherDistillationHelper(teacher if teacher is not None else ctx.teacher_source, student_dim=ctx.encoder.dim,
                                               cache_dir=settings.resolved_cache_dir, settings=settings.teacher)
            t0 = time.perf_counter()
            Tq = helper.get_teacher_embeddings([u[1] for u in train])

            def teacher_scores(cand: np.ndarray) -> np.ndarray:
                rows = np.unique(cand)
                Td = helper.get_teacher_embeddings(ctx.document_texts([doc_ids[r] for r in rows]))
                pos = np.searchsorted(rows, cand)
                return np.einsum("md,mkd->mk", Tq, Td[pos])

            data = build_feedback_targets(Sq, D, judgments, k=k, alpha=alpha, temperature=temperature, teacher_scores=teacher_scores,
                                          other_positives=cfg.other_positives, seed=seed, weights=weights)
            metrics["teacher_encode_time_s"] = time.perf_counter() - t0
            checkpoint = {"teacher": helper.teacher.name, "teacher_dim": int(helper.teacher.dim)}
        else:
            data = build_feedback_targets(Sq, D, judgments, k=k, alpha=alpha, temperature=temperature, teacher_scores=None,
                                          other_positives=cfg.other_positives, seed=seed, weights=weights)
    finally:
        if helper is not None:
            helper.release()
    t1 = time.perf_counter()
    q_ad, d_ad, res = train_feedback_adapters(current, data, D, alpha=alpha, temperature=temperature, seed=seed, config=cfg, rank=cfg.rank or settings.adaptation.rank)
    train_time = time.perf_counter() - t1
    metrics.update(n_candidates=int(data.candidates.shape[1]), loss_curve=res.curve)
    g = settings.gate
    judged_in_training = {d for u in train for d, gr in u[2].items() if gr >= 1}
    never_seen = [u[0] for u in gated if not any(d in judged_in_training for d, gr in u[2].items() if gr >= 1)]
    gate = FeedbackGate([u[0] for u in gated], ctx.encoder.encode([u[1] for u in gated]),
                        {u[0]: {d: gr for d, gr in u[2].items() if gr >= 1} for u in gated}, min_gain=g.min_gain, alpha=settings.feedback.gate_alpha, never_seen=never_seen)
    decision = gate.decide(current, (q_ad, d_ad), doc_ids, D)
    metrics.update(gate_metrics=decision.metrics)
    return AdaptationReport(
        None, False, decision.reason, source=SOURCE, ok=decision.ok, n_targets=len(train), loss_before=res.loss_before, loss_after=res.loss_after,
        gate=gate.name, gate_current=decision.current, gate_candidate=decision.candidate, train_time_s=train_time, time_s=time.perf_counter() - t_start,
        metrics=metrics, current=current, candidate=(q_ad, d_ad), checkpoint=checkpoint if decision.ok else {},
    )
