"""Quality gates: may a candidate adapter replace the one being served?

Three gates, one decision shape (:class:`GateDecision`):

* :class:`DevSetGate` — labelled: exact NDCG@10 (pytrec_eval) on a dev split with qrels
  (``--labels dev`` in the benchmark; ``engine.set_validation``).
* :class:`JudgeGate` — label-free, **estimates quality**: on held-out traffic texts that the
  candidate was never trained on, an *independent judge* ranks the corpus and its top
  documents become graded pseudo-relevance judgments; current and candidate are scored by
  NDCG@10 against them, and the candidate is promoted only if it agrees better with the
  judge by a margin that a one-sided paired t-test finds significant (``alpha``) on at least
  ``min_queries`` held-out queries. Judges: the teacher (:class:`TeacherJudge`, when one is
  configured — "an independent ranker judges", pseudo-relevance from a stronger model; with
  ``teacher.lexical_fusion``, the default, the teacher fused with BM25 by reciprocal-rank
  fusion, :class:`FusionJudge` — the same ranker offline and hybrid targets follow,
  :func:`fused_teacher_scores`) or BM25 (:class:`BM25Judge`, ``bm25s``; Robertson & Zaragoza
  2009), a lexical ranker whose errors differ from a dense student's. Rests on: pseudo-relevance judgments / reference
  lists for query-performance prediction without labels (Soboroff, Nicholas & Cahan,
  SIGIR 2001; Shtok, Kurland & Carmel, SIGIR 2016); the caution that predictors generalise
  poorly across collections (arXiv 2504.01101) is why the rule is conservative: too few
  held-out queries, or a gain that is not significant, means *reject*. Too few held-out
  traffic texts are topped up to ``gate.min_judged_texts`` with label-free corpus
  pseudo-queries that are judged only (:func:`judged_pseudo_texts`, :func:`top_up_judged`).
* :class:`ProxyGate` — the earlier label-free rule (overlap@10 with the frozen student
  ≥ ``min_overlap`` and a falling loss). It bounds drift, not quality; kept only as an
  explicit choice (``gate.judge = "proxy"``).

All gates read raw student vectors and the adapters; none reads evaluation queries.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np

from antigravity.adaptation.corpus_queries import pseudo_queries
from antigravity.evaluation import evaluate, evaluate_per_query


@dataclass
class GateDecision:
    """Outcome of a gate: ``ok`` (promote), a one-line ``reason``, the gate's score of the
    current and the candidate version (NDCG@10 against labels or the judge; overlap for the
    proxy), and ``metrics`` (e.g. ``n``, ``delta``, ``p``)."""

    ok: bool
    reason: str
    current: float | None = None
    candidate: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


def top_rows(q: np.ndarray, D: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` by inner product: row indices ``(m, k) int64`` and scores ``(m, k) float32``."""
    s = q @ D.T
    k = min(k, D.shape[0])
    part = np.argpartition(-s, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, part, 1), axis=1)
    rows = np.take_along_axis(part, order, 1)
    return rows, np.take_along_axis(s, rows, 1)


def serve(q_adapter, d_adapter, Q: np.ndarray, D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Queries and documents in the served space of ``(q_adapter, d_adapter)`` (None = identity)."""
    return (q_adapter.transform(Q) if q_adapter is not None else Q, d_adapter.transform(D) if d_adapter is not None else D)


_WORDS = re.compile(r"\w+")


def token_set(text: str) -> frozenset[str]:
    """Lower-cased ``\\w+`` tokens of ``text`` (the near-duplicate test of the protocol)."""
    return frozenset(_WORDS.findall(text.lower()))


def _bucket(text: str, salt: int | None = None) -> float:
    """A stable number in [0, 1) for ``text``: blake2b of its sorted token set, so case,
    punctuation and word-order variants of one text share a bucket. ``salt`` (an int, e.g. a
    benchmark seed) prefixes the key, giving another fixed assignment per salt; ``None`` is the
    unsalted hash every served gate uses."""
    key = " ".join(sorted(token_set(text)))
    if salt is not None:
        key = f"salt{int(salt)}:{key}"
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2.0**64


def is_held_out(text: str | None, fraction: float, salt: int | None = None) -> bool:
    """Whether a traffic/distillation text belongs to the label-free gate's held-out set. The
    assignment is a fixed function of the text (and of ``salt``, see :func:`_bucket`), so a
    text held out once is held out in every cycle and in offline distillation: no served or
    candidate adapter ever trains on it. Texts without text (vector-only searches) are never
    held out (they cannot be judged)."""
    return bool(text) and _bucket(text, salt) < fraction


def is_stopping_half(text: str) -> bool:
    """Held-out texts split in two by a second stable hash: one half for early stopping, the
    other for the gate's decision (so the epoch picked is not also the one tested)."""
    key = ("stop:" + " ".join(sorted(token_set(text)))).encode()
    return hashlib.blake2b(key, digest_size=1).digest()[0] < 128


def near_duplicate_mask(texts: Sequence[str | None], others: Sequence[str], threshold: float = 0.8) -> np.ndarray:
    """``(len(texts),) bool``: which ``texts`` have a text in ``others`` with token Jaccard
    ``>= threshold`` (inverted index over tokens; exact)."""
    sets = [token_set(t) for t in others]
    postings: dict[str, list[int]] = {}
    for i, st in enumerate(sets):
        for tok in st:
            postings.setdefault(tok, []).append(i)
    out = np.zeros(len(texts), bool)
    for j, text in enumerate(texts):
        a = token_set(text) if text else frozenset()
        if not a:
            continue
        inter: dict[int, int] = {}
        for tok in a:
            for i in postings.get(tok, ()):
                inter[i] = inter.get(i, 0) + 1
        out[j] = any(n / (len(a) + len(sets[i]) - n) >= threshold for i, n in inter.items())
    return out


def split_held_out(texts: Sequence[str | None], fraction: float, salt: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, held)`` of ``texts`` for the label-free gate: held = :func:`is_held_out`
    (with ``salt``; ``None``: the served gates' fixed assignment); train = the rest minus
    near-duplicates (Jaccard ≥ 0.8) of a held-out text, so paraphrases of a judged text are
    never trained on."""
    held = np.array([i for i, t in enumerate(texts) if is_held_out(t, fraction, salt)], np.int64)
    rest = np.array([i for i in range(len(texts)) if not is_held_out(texts[i], fraction, salt)], np.int64)
    if len(held) and len(rest):
        near = near_duplicate_mask([texts[i] for i in rest], [texts[i] for i in held])
        rest = rest[~near]
    return rest, held


def text_digest(text: str) -> str:
    """A fingerprint of ``text``'s case- and whitespace-normalised form (the protocol's
    exact-duplicate test): blake2b, 16 bytes, hex. Callers that must keep texts out of
    adaptation (a benchmark's evaluation queries) hand the engine these, not the texts."""
    return hashlib.blake2b(" ".join(text.lower().split()).encode(), digest_size=16).hexdigest()


def judged_pseudo_texts(
    doc_fields: dict[str, dict[str, str]],
    held: Sequence[str],
    trained: Sequence[str],
    need: int,
    fraction: float,
    seed: int,
    *,
    excluded: frozenset[str] = frozenset(),
    stopping_half: bool | None = None,
    with_sources: bool = False,
):
    """Label-free pseudo-queries that top up a label-free gate's held-out texts to ``need``
    (``gate.min_judged_texts``): up to ``need - len(held)`` texts made from the corpus
    (:func:`antigravity.adaptation.corpus_queries.pseudo_queries`: a quarter titles when the
    documents have titles, the rest abstract sentences of 8–60 words; numpy PCG64 ``seed``), in
    that seeded order, keeping only texts that

    * fall in the held-out bucket themselves (:func:`is_held_out` with ``fraction``): a text
      the gate judges is held out of every cycle's and offline distillation's training, now
      and later, exactly like held-out traffic;
    * are in the requested half (:func:`is_stopping_half` == ``stopping_half``; ``None``: any);
    * are neither a held nor a ``trained`` text (normalised), nor a near-duplicate (token
      Jaccard ≥ 0.8) of a ``trained`` text;
    * whose :func:`text_digest` is not in ``excluded`` (e.g. a benchmark's evaluation queries).

    They are judged only, never trained on. Why a count of about 350: the gate's one-sided
    paired t-test at α = 0.05 detects a mean judged-NDCG@10 gain δ with power 0.8 when
    n ≥ ((z₀.₉₅ + z₀.₈) · σ / δ)²; for δ = 0.02 and a per-query sd of the paired difference
    σ ≈ 0.15 that is ((1.645 + 0.842) · 0.15 / 0.02)² ≈ 348. Fixed before any suite run.

    Returns ``list[str]``, or with ``with_sources`` the pair ``(texts, doc_ids)`` — the
    document each text was taken from.
    """
    short = need - len(held)
    if short <= 0:
        return ([], []) if with_sources else []
    titles, t_src = pseudo_queries(doc_fields, len(doc_fields), 0, seed, with_sources=True)
    sentences, s_src = pseudo_queries(doc_fields, 0, 10**9, seed, with_sources=True)
    source = {**dict(zip(sentences, s_src)), **dict(zip(titles, t_src))}
    norm = lambda t: " ".join(t.lower().split())  # noqa: E731
    seen = {norm(t) for t in (*held, *trained) if t}

    def usable(t: str) -> bool:
        if not t.strip() or not is_held_out(t, fraction):
            return False
        if stopping_half is not None and is_stopping_half(t) != stopping_half:
            return False
        n = norm(t)
        if n in seen or (excluded and text_digest(t) in excluded):
            return False
        seen.add(n)
        return True

    titles = [t for t in titles if usable(t)]
    sentences = [t for t in sentences if usable(t)]
    n_titles = min(len(titles), short // 4) if titles else 0
    ordered = [*titles[:n_titles], *sentences, *titles[n_titles:]]
    trained = [t for t in trained if t]
    out: list[str] = []
    step = max(2 * short, 64)
    for i in range(0, len(ordered), step):  # near-duplicate test in chunks: stop once enough
        chunk = ordered[i : i + step]
        near = near_duplicate_mask(chunk, trained) if trained else np.zeros(len(chunk), bool)
        out += [t for t, bad in zip(chunk, near) if not bad]
        if len(out) >= short:
            break
    out = out[:short]
    return (out, [source[t] for t in out]) if with_sources else out


#: the pseudo-query pool of :func:`top_up_judged` is drawn from at most this many documents per
#: judged text needed (a seeded sample above it), so a cycle's cost does not grow with the corpus;
#: 50 × 350 = 17,500 documents covers every corpus of the development suite whole
PSEUDO_POOL_DOCS_PER_TEXT = 50


def top_up_judged(ctx, held: list[str], trained: Sequence[str | None], *, seed: int, stopping_half: bool | None = None, with_sources: bool = False):
    """The pseudo-queries that top a label-free gate's ``held`` traffic texts up to
    ``gate.min_judged_texts`` (:func:`judged_pseudo_texts` over the stored documents of
    ``ctx`` — a seeded sample of ``PSEUDO_POOL_DOCS_PER_TEXT × min_judged_texts`` of them on a
    larger corpus — excluding ``ctx.excluded``); ``[]`` when the setting is 0, the held-out
    texts are enough, or the store keeps no text. ``with_sources``: ``(texts, doc_ids)``."""
    need = int(getattr(ctx.settings.gate, "min_judged_texts", 0) or 0)
    if need <= len(held):
        return ([], []) if with_sources else []
    fields = {}
    doc_ids = list(ctx.doc_ids)
    cap = PSEUDO_POOL_DOCS_PER_TEXT * need
    if len(doc_ids) > cap:  # bounded work on a large corpus: a seeded sample of documents
        doc_ids = [doc_ids[i] for i in sorted(np.random.Generator(np.random.PCG64(seed)).choice(len(doc_ids), size=cap, replace=False))]
    for d in doc_ids:
        try:
            fields[d] = ctx.document_fields(d)
        except Exception:  # noqa: BLE001 - a document without stored fields gives no pseudo-query
            continue
    return judged_pseudo_texts(
        fields, held, [t for t in trained if t], need, ctx.settings.gate.holdout_fraction, seed,
        excluded=getattr(ctx, "excluded", frozenset()), stopping_half=stopping_half, with_sources=with_sources,
    )


class UnavailableGate:
    """A gate that cannot judge (no usable judge): every candidate is rejected, with the reason."""

    def __init__(self, name: str, why: str) -> None:
        self.name, self.why = name, why

    def decide(self, current: tuple, candidate: tuple, doc_ids: list[str], D: np.ndarray, **context: Any) -> GateDecision:
        return GateDecision(False, f"{self.name}: {self.why}; kept the current version")


def ranked_run(qids: Sequence[str], Q: np.ndarray, doc_ids: Sequence[str], D: np.ndarray, q_adapter=None, d_adapter=None, k: int = 100) -> dict[str, dict[str, float]]:
    """Exact cosine run ``{qid: {doc_id: score}}`` of raw query vectors ``Q (m, d)`` against raw
    documents ``D (N, d)`` under the given adapters (the engine serves the same ranking)."""
    Qs, Ds = serve(q_adapter, d_adapter, Q, D)
    rows, scores = top_rows(Qs, Ds, k)
    return {q: {doc_ids[r]: float(s) for r, s in zip(rr, ss)} for q, rr, ss in zip(qids, rows, scores)}


class Gate(Protocol):
    """A gate scores ``(query adapter, doc adapter)`` pairs on its validation queries."""

    name: str

    def decide(self, current: tuple, candidate: tuple, doc_ids: list[str], D: np.ndarray, **context: Any) -> GateDecision: ...


class DevSetGate:
    """Labelled validation: exact NDCG@10 (pytrec_eval) of a candidate on a dev split.

    Args:
        qids: dev query ids; ``vectors`` their raw student vectors ``(m, d) float32``;
        qrels: ``{qid: {doc_id: rel}}`` (in the benchmark: a seeded slice of the adaptation
            split's qrels, never evaluation queries). ``tolerance``: allowed drop.
    """

    name = "dev_ndcg@10"

    def __init__(self, qids: list[str], vectors: np.ndarray, qrels: dict[str, dict[str, int]], tolerance: float = 0.0) -> None:
        self.qids, self.vectors, self.qrels = list(qids), np.asarray(vectors, np.float32), qrels
        self.tolerance = tolerance

    def score(self, q_adapter, d_adapter, doc_ids: list[str], D: np.ndarray) -> float:
        """Mean NDCG@10 of the dev queries under the adapters."""
        return evaluate(self.qrels, ranked_run(self.qids, self.vectors, doc_ids, D, q_adapter, d_adapter))["ndcg@10"]

    def decide(self, current: tuple, candidate: tuple, doc_ids: list[str], D: np.ndarray, **context: Any) -> GateDecision:
        cur, cand = self.score(*current, doc_ids, D), self.score(*candidate, doc_ids, D)
        ok = cand >= cur - self.tolerance
        return GateDecision(ok, f"{self.name} {cur:.4f} -> {cand:.4f} (tolerance {self.tolerance})", cur, cand, {"n": len(self.qids)})


class ProxyGate:
    """Drift bound (not a quality estimate): mean overlap@10 between the candidate's top-10
    and the frozen student's on held-out traffic ``>= min_overlap``, and the training loss fell."""

    name = "proxy_overlap@10"

    def __init__(self, held_out: np.ndarray, min_overlap: float = 0.7) -> None:
        self.held_out = held_out
        self.min_overlap = min_overlap

    def score(self, q_adapter, d_adapter, doc_ids: list[str], D: np.ndarray) -> float:
        if len(self.held_out) == 0:
            return 1.0
        ref, _ = top_rows(self.held_out, D, 10)
        Q, Ds = serve(q_adapter, d_adapter, self.held_out, D)
        cand, _ = top_rows(Q, Ds, 10)
        return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ref, cand)]))

    def decide(self, current: tuple, candidate: tuple, doc_ids: list[str], D: np.ndarray, *, loss_before: float | None = None, loss_after: float | None = None, **context: Any) -> GateDecision:
        cur, cand = self.score(*current, doc_ids, D), self.score(*candidate, doc_ids, D)
        fell = loss_before is None or loss_after is None or loss_after < loss_before
        ok = cand >= self.min_overlap and fell
        return GateDecision(ok, f"proxy overlap@10 {cand:.3f} (min {self.min_overlap}), loss {loss_before} -> {loss_after}", cur, cand, {"n": len(self.held_out)})


# -- judges -------------------------------------------------------------------------------


def judge_qrels(qids: Sequence[str], doc_ids: Sequence[str], rows: np.ndarray, depth: int = 10) -> dict[str, dict[str, int]]:
    """Graded pseudo-relevance from a judge's ranking ``rows (m, ≥depth)`` (row indices into
    ``doc_ids``, best first): ranks 1–3 grade 3, 4–6 grade 2, 7–``depth`` grade 1."""
    out = {}
    for q, rr in zip(qids, rows):
        grades = {}
        for rank, r in enumerate(rr[:depth]):
            if r < 0:
                continue
            grades[doc_ids[r]] = 3 if rank < 3 else 2 if rank < 6 else 1
        out[q] = grades
    return out


class Judge(Protocol):
    """Ranks the corpus for held-out query texts; ``rank(texts, k) -> (m, k) int64`` row
    indices into the gate's ``doc_ids`` (−1 padding), best first."""

    name: str

    def rank(self, texts: Sequence[str], k: int) -> np.ndarray: ...


class TeacherJudge:
    """The teacher as judge: cosine of teacher query vectors ``Tq (m, d_t)`` against teacher
    document vectors ``Td (N, d_t)`` (both unit rows, any teacher dimension)."""

    name = "teacher"

    def __init__(self, teacher_docs: np.ndarray, encode_queries) -> None:
        self.Td = np.asarray(teacher_docs, np.float32)
        self.encode_queries = encode_queries
        self._last: tuple[list[str], np.ndarray] | None = None  # the last texts encoded: a fused judge ranks them again deeper

    def rank(self, texts: Sequence[str], k: int) -> np.ndarray:
        texts = list(texts)
        if self._last is None or self._last[0] != texts:
            self._last = (texts, np.asarray(self.encode_queries(texts), np.float32))
        return top_rows(self._last[1], self.Td, k)[0]


#: reciprocal-rank-fusion constant and the depth each fused judge ranks to (Cormack, Clarke &
#: Büttcher, SIGIR 2009: k = 60, fused over each system's top 1000; 100 here, the judge's grades
#: only reach depth 10)
RRF_K, RRF_DEPTH = 60, 100


def rrf_order(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[int]:
    """Reciprocal-rank fusion of one query's rankings (row indices, best first, −1 padding):
    a document's score is ``Σ 1 / (k + rank)`` (rank from 1) over the rankings that hold it
    (Cormack, Clarke & Büttcher, SIGIR 2009); returns the fused order, ties in order of first
    appearance (the first ranking's order first)."""
    score: dict[int, float] = {}
    for rows in rankings:
        for rank, r in enumerate(rows):
            if r >= 0:
                score[int(r)] = score.get(int(r), 0.0) + 1.0 / (k + rank + 1)
    return sorted(score, key=score.__getitem__, reverse=True)  # stable


def fused_name(names: Sequence[str]) -> str:
    """The name a :class:`FusionJudge` of judges named ``names`` records (``"rrf(teacher+bm25)"``)."""
    return "rrf(" + "+".join(names) + ")"


class FusionJudge:
    """Reciprocal-rank fusion of several judges (:func:`rrf_order` over each judge's top
    ``RRF_DEPTH``). A dense teacher and BM25 make different errors, and their fusion is the
    usual strong label-free ranker (BEIR, Thakur et al., NeurIPS 2021 datasets track).
    ``rank(texts, k) -> (m, k) int64``, −1 padding."""

    def __init__(self, judges: Sequence[Judge]) -> None:
        self.judges = list(judges)
        self.name = fused_name([j.name for j in self.judges])

    def rank(self, texts: Sequence[str], k: int) -> np.ndarray:
        runs = [j.rank(list(texts), RRF_DEPTH) for j in self.judges]
        out = np.full((len(texts), k), -1, np.int64)
        for i in range(len(texts)):
            best = rrf_order([rows[i] for rows in runs])[:k]
            out[i, : len(best)] = best
        return out


def fused_teacher_scores(ts: np.ndarray, lexical_rows: np.ndarray) -> np.ndarray:
    """The teacher's scores ``ts (m, N)`` re-assigned along the reciprocal-rank fusion of its
    own top ``RRF_DEPTH`` and a lexical ranking ``lexical_rows (m, ≥1)`` (row indices, −1
    padding): the fused order's j-th document gets the teacher's j-th highest score; documents
    neither ranking holds keep the teacher's order below them. Same values per row, so a
    softmax temperature keeps its meaning; only who gets which score changes. ``(m, N) float32``."""
    ts = np.asarray(ts, np.float32)
    out = np.empty_like(ts)
    order = np.argsort(-ts, axis=1, kind="stable")
    for i in range(len(ts)):
        fused = np.array(rrf_order([order[i, :RRF_DEPTH], lexical_rows[i, :RRF_DEPTH]]), np.int64)
        rest = np.ones(ts.shape[1], bool)
        rest[fused] = False
        full = np.concatenate([fused, order[i][rest[order[i]]]])
        out[i, full] = ts[i, order[i]]
    return out


_TOKEN = re.compile(r"\w+")


class BM25Judge:
    """BM25 over the stored document texts (``bm25s``, Lucene variant, k1 = 1.5, b = 0.75,
    English stopwords). Built once per corpus state; ``texts`` aligned with the gate's ids."""

    name = "bm25"

    def __init__(self, doc_texts: Sequence[str]) -> None:
        import bm25s

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets DEBUG on import
        self._bm25s = bm25s
        self.n_docs = len(doc_texts)
        tokens = bm25s.tokenize(list(doc_texts), stopwords="en", show_progress=False)
        self.vocab = tokens.vocab
        self.retriever = None
        if self.vocab:  # a corpus with no indexable word cannot judge anything
            self.retriever = bm25s.BM25()
            self.retriever.index(tokens, show_progress=False)

    def rank(self, texts: Sequence[str], k: int) -> np.ndarray:
        k = min(k, self.n_docs)
        out = np.full((len(texts), k), -1, np.int64)
        if self.retriever is None or k == 0:
            return out
        q_tokens = self._bm25s.tokenize(list(texts), stopwords="en", show_progress=False, return_ids=False)
        for i, toks in enumerate(q_tokens):
            toks = [t for t in toks if t in self.vocab]
            if not toks:
                continue
            res, scores = self.retriever.retrieve([toks], k=k, show_progress=False, n_threads=1)
            keep = scores[0] > 0
            out[i, : int(keep.sum())] = res[0][keep]
        return out


def paired_gain(diff: np.ndarray) -> tuple[float, float]:
    """Mean of the paired differences ``diff (m,)`` and the one-sided paired t-test p-value for
    "greater than 0" (scipy); ``(0.0, 1.0)`` when there are none; p = 1 when every difference
    is 0 or there is only one."""
    if not len(diff):
        return 0.0, 1.0
    p = 1.0
    if len(diff) > 1 and np.any(diff):
        from scipy import stats

        p = float(stats.ttest_1samp(diff, 0.0, alternative="greater").pvalue)
    return float(diff.mean()), p


#: depths of the shallow judge diagnostics: a judge's deep ranks are mostly non-relevant on
#: corpora with few relevant documents per query, so agreement there may not be quality
#: (pseudo-relevance precision falls with depth; Soboroff, Nicholas & Cahan, SIGIR 2001)
SHALLOW_DEPTHS = (1, 3)

RISK_LEVELS = (1.0, 2.0, 5.0)  # risk weights α (1 and 5 are among those the TREC 2013–14 Web track risk-sensitive task reported); losses weigh 1 + α


def risk_gain(diff: np.ndarray, risk: float) -> tuple[float, float]:
    """Risk-sensitive paired gain: losses weigh ``1 + risk`` times, ``z_i = δ_i`` if
    ``δ_i ≥ 0`` else ``(1 + risk)·δ_i`` (URisk, Wang, Bennett & Collins-Thompson, SIGIR 2012),
    and the one-sided t-test of ``mean(z) > 0`` (TRisk, Dinçer, Macdonald & Ounis, SIGIR 2014)
    via :func:`paired_gain`. ``diff (m,)``: per-query gains of a candidate over the current
    version. Returns ``(mean z, one-sided p)``."""
    d = np.asarray(diff, np.float64)
    return paired_gain(np.where(d >= 0, d, (1.0 + risk) * d))


class JudgeGate:
    """Label-free quality estimate on held-out traffic (see module doc).

    Args:
        qids: ids of the held-out texts; ``vectors``: their raw student vectors ``(m, d) float32``;
        qrels: the judge's graded pseudo-qrels (:func:`judge_qrels`); ``judge``: its name.
        min_queries: fewer held-out queries with a judgment → reject (cannot estimate).
        min_gain: the mean NDCG@10 gain over current must exceed this.
        alpha: one-sided paired t-test level for "candidate agrees better with the judge".
        sources: per text, where it came from (``"traffic"`` / ``"pseudo"``); the decision's
            metrics then also give the gain on each (``by_source``), risk-sensitive forms of
            the gain (``risk``: :func:`risk_gain` per weight in :data:`RISK_LEVELS`) and the
            judged texts that rose / fell (``risk["wins_losses"]``) — never decisive.
        also: diagnostics only, never part of the decision — other judges' pseudo-qrels over
            the same ``qids`` (``{name: qrels}``); the metrics give each one's gain (``also``).
    """

    def __init__(
        self, qids: list[str], vectors: np.ndarray, qrels: dict[str, dict[str, int]], judge: str, *,
        min_queries: int = 20, min_gain: float = 0.0, alpha: float = 0.05, judged_texts: dict[str, int] | None = None,
        sources: Sequence[str] | None = None, also: dict[str, dict[str, dict[str, int]]] | None = None,
    ) -> None:
        self.judged_texts = judged_texts  # {"traffic": n, "pseudo": m} texts handed to the judge, when known
        keep = [i for i, q in enumerate(qids) if qrels.get(q)]
        self.all_qids, self.all_vectors = list(qids), np.asarray(vectors, np.float32)
        self.qids = [qids[i] for i in keep]
        self.vectors = self.all_vectors[keep]
        self.qrels = {q: qrels[q] for q in self.qids}
        self.sources = dict(zip(qids, sources)) if sources is not None else None
        self.also = also or {}
        self.judge = judge
        self.name = f"judge_{judge}_ndcg@10"
        self.min_queries, self.min_gain, self.alpha = min_queries, min_gain, alpha

    @classmethod
    def build(
        cls, judge: Judge, texts: Sequence[str], vectors: np.ndarray, doc_ids: Sequence[str], *,
        also_judges: Sequence[Judge] = (), known_items: Sequence[str | None] | None = None, **kwargs: Any,
    ) -> "JudgeGate":
        """Rank the corpus for ``texts`` with ``judge`` and keep the top 10 as graded pseudo-qrels.
        Diagnostics (recorded, never decisive): ``also_judges`` rank the same texts; ``known_items``
        gives per text the id of the document it was taken from (``None`` for traffic) — the
        known-item judge (grade 1 for that document; Azzopardi, de Rijke & Balog, SIGIR 2007) —
        and switches on the shallow forms of the judge itself (``"<judge>@1"``, ``"@3"``: only
        its top 1 / top 3 documents count, :data:`SHALLOW_DEPTHS`). With ``also_judges`` a teacher judge
        fused with them (:class:`FusionJudge`, ``"rrf(<judge>+<other>…)"``) is recorded too."""
        qids = [f"h{i}" for i in range(len(texts))]
        rows = judge.rank(list(texts), 10) if len(texts) else np.zeros((0, 10), np.int64)
        also = {}
        for other in also_judges:
            also[other.name] = judge_qrels(qids, doc_ids, other.rank(list(texts), 10)) if len(texts) else {}
        if also_judges and judge.name == "teacher":  # and the teacher fused with them
            fused = FusionJudge([judge, *also_judges])
            also[fused.name] = judge_qrels(qids, doc_ids, fused.rank(list(texts), 10)) if len(texts) else {}
        if known_items is not None:
            also["known_item"] = {q: {d: 1} for q, d in zip(qids, known_items) if d is not None}
            for depth in SHALLOW_DEPTHS:  # the same judge, only its most confident documents
                also[f"{judge.name}@{depth}"] = judge_qrels(qids, doc_ids, rows, depth=depth)
        return cls(qids, vectors, judge_qrels(qids, doc_ids, rows), judge.name, also=also, **kwargs)

    def per_query(self, q_adapter, d_adapter, doc_ids: list[str], D: np.ndarray) -> np.ndarray:
        """NDCG@10 against the judge per held-out query, ``(m,) float64``."""
        if not self.qids:
            return np.zeros(0)
        return self._ndcg(self.qrels, ranked_run(self.qids, self.vectors, doc_ids, D, q_adapter, d_adapter))

    def score(self, q_adapter, d_adapter, doc_ids: list[str], D: np.ndarray) -> float:
        """Mean judged NDCG@10 (early stopping uses it)."""
        v = self.per_query(q_adapter, d_adapter, doc_ids, D)
        return float(v.mean()) if len(v) else 0.0

    def decide(self, current: tuple, candidate: tuple, doc_ids: list[str], D: np.ndarray, **context: Any) -> GateDecision:
        n = len(self.qids)
        if n < self.min_queries:
            return GateDecision(False, f"{self.name}: {n} held-out queries with a judgment < min {self.min_queries}; cannot estimate quality, kept the current version", metrics={"n": n, **self._sources()})
        if self.also:  # diagnostics: rank every held-out text once per version, judge all from it
            runs = [ranked_run(self.all_qids, self.all_vectors, doc_ids, D, *ad) for ad in (current, candidate)]
            a, b = (self._ndcg(self.qrels, run) for run in runs)
        else:
            runs = None
            a = self.per_query(*current, doc_ids, D)
            b = self.per_query(*candidate, doc_ids, D)
        diff = b - a
        delta, p = paired_gain(diff)
        ok = delta > self.min_gain and p < self.alpha
        why = f"{self.name} {a.mean():.4f} -> {b.mean():.4f} (Δ {delta:+.4f}, one-sided p {p:.3g}, n {n}; promote if Δ > {self.min_gain} and p < {self.alpha})"
        metrics = {"n": n, "delta": delta, "p": p, **self._sources()}
        if self.sources is not None:  # gate.diagnostics: per source, and risk-sensitive forms of the same gain
            metrics["by_source"] = self._split(dict(zip(self.qids, diff)))
            metrics["risk"] = {f"{r:g}": dict(zip(("delta", "p"), risk_gain(diff, r))) for r in RISK_LEVELS}
            metrics["risk"]["wins_losses"] = [int((diff > 0).sum()), int((diff < 0).sum())]
        if runs is not None:
            metrics["also"] = self._also(runs)
        return GateDecision(ok, why, float(a.mean()), float(b.mean()), metrics)

    @staticmethod
    def _ndcg(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]) -> np.ndarray:
        """NDCG@10 of ``run`` per query of ``qrels`` (in its order), ``(m,) float64``."""
        per = evaluate_per_query(qrels, {q: run[q] for q in qrels})
        return np.array([per[q]["ndcg@10"] for q in qrels])

    def _split(self, diff: dict[str, float]) -> dict[str, dict[str, float]]:
        """Gain per text source: ``{source: {"n", "delta", "p"}}`` over the qids in ``diff``."""
        out = {}
        for src in sorted({self.sources[q] for q in diff} if self.sources else ()):
            d = np.array([v for q, v in diff.items() if self.sources[q] == src])
            delta, p = paired_gain(d)
            out[src] = {"n": len(d), "delta": delta, "p": p}
        return out

    def _also(self, runs: list[dict[str, dict[str, float]]]) -> dict[str, Any]:
        """Each diagnostic judge's gain from the current and candidate ``runs``, overall and per
        source (never decisive)."""
        out = {}
        for name, qrels in self.also.items():
            sub = {q: qrels[q] for q in self.all_qids if qrels.get(q)}
            if not sub:
                continue
            a, b = (self._ndcg(sub, run) for run in runs)
            delta, p = paired_gain(b - a)
            out[name] = {"n": len(sub), "delta": delta, "p": p}
            if self.sources is not None:
                out[name]["by_source"] = self._split(dict(zip(sub, b - a)))
        return out

    def _sources(self) -> dict[str, Any]:
        return {"judged_texts": dict(self.judged_texts)} if self.judged_texts is not None else {}


_BM25_LOCK = threading.Lock()
_BM25_LAST: list[tuple[list[str], BM25Judge]] = []  # one entry: the last corpus judged


def bm25_judge(ctx, doc_ids: list[str]) -> BM25Judge:
    """A BM25 judge over the stored texts of ``doc_ids`` (``ctx.document_texts``), reused
    while the corpus is unchanged (``doc_ids`` is the list object of the engine's raw-matrix
    cache, replaced on every ingest).

    Raises:
        DocumentError: the store keeps no document text.
    """
    with _BM25_LOCK:
        if _BM25_LAST and _BM25_LAST[0][0] is doc_ids:
            return _BM25_LAST[0][1]
    judge = BM25Judge(ctx.document_texts(doc_ids))
    with _BM25_LOCK:
        _BM25_LAST[:] = [(doc_ids, judge)]
    return judge


def lexical_judge(ctx, doc_ids: list[str]) -> BM25Judge | None:
    """The BM25 ranker the teacher is fused with when ``teacher.lexical_fusion`` is on, else
    ``None``. A store without document text leaves the teacher alone: ``None``, counted in
    ``stats()["teacher_failures"]`` as ``lexical_<kind>``."""
    if not ctx.settings.teacher.lexical_fusion:
        return None
    from antigravity.core.errors import DocumentError, failure_kind

    try:
        return bm25_judge(ctx, doc_ids)
    except DocumentError as exc:
        ctx.report_failure("lexical_" + failure_kind(exc), exc)
        return None


def lexical_rows(ctx, doc_ids: list[str], texts: Sequence[str]) -> np.ndarray | None:
    """BM25's top :data:`RRF_DEPTH` rows ``(m, RRF_DEPTH) int64`` for ``texts`` — what
    :func:`fused_teacher_scores` fuses the teacher's targets with — or ``None`` without
    lexical fusion (:func:`lexical_judge`)."""
    lexical = lexical_judge(ctx, doc_ids) if len(texts) else None
    return lexical.rank(list(texts), RRF_DEPTH) if lexical is not None else None


def teacher_judge(ctx, doc_ids: list[str], teacher_docs: np.ndarray, encode_queries) -> Judge:
    """The teacher as judge (:class:`TeacherJudge`), fused with BM25 (:class:`FusionJudge`)
    when lexical fusion is on (:func:`lexical_judge`)."""
    judge = TeacherJudge(teacher_docs, encode_queries)
    lexical = lexical_judge(ctx, doc_ids)
    return FusionJudge([judge, lexical]) if lexical is not None else judge


def diagnostic_kwargs(ctx, doc_ids: list[str], n_traffic: int, known: Sequence[str], *, with_bm25: bool) -> dict[str, Any]:
    """:meth:`JudgeGate.build` arguments of ``gate.diagnostics``: text sources (``n_traffic``
    held-out traffic texts, then the pseudo-queries taken from documents ``known``), the
    known-item judge, and BM25 beside a teacher judge (skipped when the store keeps no text)."""
    out: dict[str, Any] = {"sources": ["traffic"] * n_traffic + ["pseudo"] * len(known), "known_items": [None] * n_traffic + list(known)}
    if with_bm25:
        try:
            out["also_judges"] = [bm25_judge(ctx, doc_ids)]
        except Exception:  # noqa: BLE001 - a diagnostic never stops a decision
            pass
    return out


def resolve_judge(settings) -> str:
    """``gate.judge`` with ``auto`` resolved: the teacher in offline/hybrid mode, BM25 otherwise."""
    judge = settings.gate.judge
    if judge == "auto":
        return "teacher" if settings.uses_teacher else "bm25"
    return judge
