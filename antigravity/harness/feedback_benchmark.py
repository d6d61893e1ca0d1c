"""``antigravity benchmark --feedback train``: relevance feedback (judgments) as training signal,
measured on documents no feedback touched. Written up in ``docs/feedback.md``.

* **Feedback source.** A task with a ``train`` qrels split (SciFact): every TRAIN qrels row is
  a feedback judgment (``source = "qrels"``); the evaluation split (``--split``, test) is scored
  whole. A corpus with test judgments only (the dev suite): per seed, the judged queries are
  split in two halves by :func:`antigravity.harness.benchmark.split_for_seed` (the same
  ``PCG64(seed)`` halves the label-free protocol evaluates on) — one half's qrels are the
  feedback, the other half is evaluated. Query texts and qrels only: ``metadata`` of
  ``queries.jsonl`` is never read (``antigravity.datasets`` drops it on load).
* **No duplicate across the two sides.** Normalised text (:func:`~antigravity.harness.benchmark.normalise`):
  with a train split, a feedback query equal to an evaluation query is dropped from the
  feedback (the protocol's rule; the test split stays the standard one); with halves, an
  evaluation query equal to a feedback query is dropped from the evaluation. Counted per seed
  (``n_dropped_exact_duplicates``, ``dropped_from``). Evaluation queries with a feedback query
  of token Jaccard ≥ 0.8 are counted (``n_eval_near_dup``), not dropped.
* **Strata.** ``all``; ``seen``: evaluation queries with a relevant document (grade > 0) that
  some feedback query also judged relevant; **``never_seen`` — the headline**: the rest, where
  a gain can only come from generalisation.
* **Rows** (per seed, then aggregated): ``frozen`` (the raw student); ``prior`` (zero
  parameters: the frozen top-100 with ``+boost`` added to the cosine of every document judged
  relevant by any feedback query); ``adapted`` (the version the engine SERVES after
  ``engine.train_on_feedback()`` — the frozen student again when the feedback gate rejects);
  ``candidate`` (the trained adapter whatever the gate said, when every seed trained one).
  All are scored by exact search over the stored vectors (the engine's ranking,
  :func:`~antigravity.harness.benchmark.adapters_run`).
* **Seeds** vary the adapter initialisation and batch order (``adaptation.seed``), the gate's
  hold-out of feedback queries (``split_seed``: a salted hash,
  :func:`antigravity.adaptation.feedback_training.split_feedback`) and, for halves, which
  queries are feedback and which are evaluated.
* **Statistics** (reused, not re-implemented): per row and stratum, mean over seeds of the
  per-seed means, sample std (ddof = 1), per-seed Δ vs frozen, a paired t-test of per-query
  NDCG@10 Δ (each query's Δ averaged over the seeds that evaluate it;
  :func:`antigravity.harness.benchmark.aggregate`), Holm-corrected across every non-frozen
  row × stratum × corpus of the run (:func:`antigravity.evaluation.holm`).
* **α.** ``feedback.alpha`` when the settings set it (config file, environment or override),
  else 1 (feedback alone: no teacher loaded). α < 1 needs the teacher named in the settings.
* **Recipe.** :func:`benchmark_recipe` — ``FeedbackConfig(epochs=10, lr=3e-3,
  identity_reg=1e-2)``, chosen on SciFact's held-out TRAIN feedback queries
  (``benchmarks/feedback_scifact.py --sweep``; never on test), not the untuned
  :class:`~antigravity.adaptation.feedback_training.FeedbackConfig` default.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from antigravity.adaptation.feedback_training import FeedbackConfig
from antigravity.core.errors import AdaptationError, ConfigurationError
from antigravity.evaluation import evaluate_per_query, holm
from antigravity.harness.benchmark import (
    CorpusSource,
    _fmt,
    _row,
    adapters_run,
    aggregate,
    evaluate_adapters,
    load_sources,
    near_duplicates,
    normalise,
    split_for_seed,
    student_encoder,
)
from antigravity.settings import Settings

logger = logging.getLogger(__name__)

#: ``--feedback`` values: ``train`` = qrels as judgments; ``clicks`` = clicks simulated from the
#: same qrels on the frozen student's top-10 of each feedback query (:data:`CLICK_MODEL`)
FEEDBACK_KINDS = ("train", "clicks")

#: ``--feedback clicks``: the position-based click model of :func:`antigravity.clicks.simulate_clicks`
#: with the parameters of Joachims, Swaminathan & Schnabel (WSDM 2017, §6): examination ``p_r = r^−η``
#: with η = 1, a relevant examined document clicked with ε+ = 1, a non-relevant one with ε− = 0.1
#: (noise), 5 sessions per feedback query, each shown the frozen student's top ``k`` = 10. Clicks are
#: seeded by the benchmark seed. ``feedback.propensity`` (settings) chooses unweighted or inverse-propensity training.
CLICK_MODEL = {"k": 10, "sessions": 5, "eta": 1.0, "eps_pos": 1.0, "eps_neg": 0.1}
FEEDBACK_STRATA = ("all", "seen", "never_seen")
FEEDBACK_HEADLINE = "never_seen"
#: rows of a corpus result, in table order (``candidate`` only when every seed trained one)
ROWS = ("frozen", "prior", "adapted", "candidate")
PRIOR_BOOST = 0.1


def benchmark_recipe() -> FeedbackConfig:
    """The feedback benchmark's training recipe: the engine's default :class:`FeedbackConfig`
    (10 epochs, lr 3e-3, identity_reg 1e-2 — the best of a 5-recipe grid on SciFact's 155
    held-out TRAIN feedback queries, ``results/feedback/scifact_L6_alpha1_sweep.json``; query
    adapter only with other queries' positives as negatives, chosen on held-out TRAIN feedback
    by ``benchmarks/feedback_generalisation.py``). Test was not used to choose it."""
    return FeedbackConfig()


def validate_feedback_kind(kind: Any) -> str:
    """``kind`` must be one of :data:`FEEDBACK_KINDS`; raises :class:`ConfigurationError`."""
    if kind not in FEEDBACK_KINDS:
        raise ConfigurationError(f"--feedback {kind!r}: not available; choose from {', '.join(FEEDBACK_KINDS)} (train: qrels of a train split, or of half the judged queries, "
                                 "as judgments; clicks: clicks simulated from them)")
    return str(kind)


def feedback_alpha(settings: Settings) -> float:
    """α of the benchmark: ``feedback.alpha`` if the settings set it explicitly (config file,
    environment, override), else 1.0 (feedback alone; the settings default 0.5 would need a teacher)."""
    return float(settings.feedback.alpha) if "alpha" in settings.feedback.model_fields_set else 1.0


@dataclass
class FeedbackData:
    """One seed's feedback split of a corpus: evaluation queries/qrels, feedback queries/qrels,
    the documents judged relevant in feedback (``seen_docs``), evaluation ids with a feedback
    near-duplicate, and the protocol counts. Duck-types what
    :func:`~antigravity.harness.benchmark.aggregate` and :func:`adapters_run` read
    (``doc_ids``, ``doc_texts``, ``eval_queries``, ``eval_qrels``, ``stratum``, ``protocol``)."""

    name: str
    split: str
    kind: str
    doc_ids: list[str]
    doc_texts: list[str]
    eval_queries: dict[str, str]
    eval_qrels: dict[str, dict[str, int]]
    feedback_queries: dict[str, str]
    feedback_qrels: dict[str, dict[str, int]]
    seen_docs: set[str] = field(default_factory=set)
    near_dup: set[str] = field(default_factory=set)
    protocol: dict[str, Any] = field(default_factory=dict)

    def stratum(self, name: str) -> list[str]:
        """Evaluation query ids of stratum ``name`` (one of :data:`FEEDBACK_STRATA`)."""
        if name == "all":
            return list(self.eval_queries)
        if name not in FEEDBACK_STRATA:
            raise ConfigurationError(f"unknown stratum {name!r}; known: {', '.join(FEEDBACK_STRATA)}")
        seen = name == "seen"
        return [q for q in self.eval_queries if any(g > 0 and d in self.seen_docs for d, g in self.eval_qrels[q].items()) == seen]

    def feedback_rows(self, max_relevance: int) -> list[dict[str, Any]]:
        """Rows for ``engine.feedback_batch``: one per feedback qrels entry with grade ≥ 0
        (grades above ``max_relevance`` are clipped to it), ``source = "qrels"``."""
        return [{"query": self.feedback_queries[q], "doc_id": d, "relevance": min(int(g), max_relevance), "source": "qrels"}
                for q in sorted(self.feedback_qrels) for d, g in sorted(self.feedback_qrels[q].items()) if int(g) >= 0]


def feedback_split(src: CorpusSource, seed: int) -> FeedbackData:
    """The seed's feedback split of ``src`` (module doc). Deterministic in ``seed``.

    Raises:
        ConfigurationError: the corpus has no evaluation judgments, or no feedback query is left.
    """
    if not src.eval_qrels:
        raise ConfigurationError(f"--feedback train: the corpus {src.name!r} has no {src.split} qrels to evaluate on")
    if src.kind == "train":
        eval_q, eval_r = dict(src.eval_queries), dict(src.eval_qrels)
        eval_norm = {normalise(t) for t in eval_q.values()}
        pool = sorted(q for q in src.adapt_qrels if q in src.adapt_queries)
        fb_ids = [q for q in pool if normalise(src.adapt_queries[q]) not in eval_norm]
        dropped, dropped_from = len(pool) - len(fb_ids), "feedback"
        fb_q = {q: src.adapt_queries[q] for q in fb_ids}
        fb_r = {q: src.adapt_qrels[q] for q in fb_ids}
    else:
        half = split_for_seed(src, seed, labels="none")  # the protocol's PCG64(seed) halves
        fb_q = {q: t for q, t in sorted(src.eval_queries.items()) if q in src.eval_qrels and q not in half.eval_queries}
        fb_r = {q: src.eval_qrels[q] for q in fb_q}
        fb_norm = {normalise(t) for t in fb_q.values()}
        eval_q = {q: t for q, t in half.eval_queries.items() if normalise(t) not in fb_norm}
        eval_r = {q: src.eval_qrels[q] for q in eval_q}
        dropped, dropped_from = len(half.eval_queries) - len(eval_q), "evaluation"
    if not fb_q:
        raise ConfigurationError(f"--feedback train: no feedback query left on {src.name!r} (seed {seed})")
    seen = {d for q in fb_r for d, g in fb_r[q].items() if g > 0}
    near = near_duplicates(eval_q, list(fb_q.values()))
    data = FeedbackData(src.name, src.split, src.kind, src.doc_ids, src.doc_texts, eval_q, eval_r, fb_q, fb_r, seen, near)
    n_seen = len(data.stratum("seen"))
    data.protocol = {
        "split_kind": src.kind, "seed": seed,
        "feedback_source": f"{'train' if src.kind == 'train' else src.split} qrels" + ("" if src.kind == "train" else " of the seed's other half of the judged queries"),
        "n_eval": len(eval_q), "n_feedback_queries": len(fb_q), "n_feedback_judgments": sum(len(r) for r in fb_r.values()),
        "n_seen_docs": len(seen), "n_dropped_exact_duplicates": dropped, "dropped_from": dropped_from,
        "n_eval_seen": n_seen, "n_eval_never_seen": len(eval_q) - n_seen, "n_eval_near_dup": len(near),
        "eval_query_ids": sorted(eval_q), "feedback_query_ids": sorted(fb_q),
    }
    return data


def boosted_run(run: dict[str, dict[str, float]], docs: set[str], boost: float) -> dict[str, dict[str, float]]:
    """The zero-parameter prior: ``run`` with ``boost`` added to the score of every document in ``docs``
    (re-ranks within each query's retrieved list; nothing outside it is added)."""
    return {q: {d: s + (boost if d in docs else 0.0) for d, s in hits.items()} for q, hits in run.items()}


def simulated_click_rows(engine: Any, data: FeedbackData, seed: int) -> list[dict[str, Any]]:
    """Click rows for the feedback queries of ``data`` under :data:`CLICK_MODEL`: each query is
    shown the engine's current top-``k`` (the frozen student before training) and clicked on by
    :func:`antigravity.clicks.simulate_clicks` with its qrels as the true relevance (seeded)."""
    from antigravity.clicks import simulate_clicks

    m = CLICK_MODEL
    qids = sorted(data.feedback_queries)
    hits = engine.search_batch([data.feedback_queries[q] for q in qids], k=m["k"], record=False)
    shown = {q: [h.doc_id for h in hs] for q, hs in zip(qids, hits)}
    return simulate_clicks(shown, data.feedback_qrels, data.feedback_queries, sessions=m["sessions"], eta=m["eta"], eps_pos=m["eps_pos"],
                           eps_neg=m["eps_neg"], seed=seed)


def run_feedback_seed(settings: Settings, data: FeedbackData, seed: int, encoder, qvecs: np.ndarray, *, alpha: float,
                      recipe: FeedbackConfig, boost: float = PRIOR_BOOST, kind: str = "train") -> dict[str, Any]:
    """One seed: a fresh in-memory engine (``adaptation.seed = seed``) with the corpus; the frozen
    and prior rows; the feedback rows stored; ``engine.train_on_feedback(alpha, seed,
    split_seed=seed, config=recipe)``; the served (``adapted``) and ``candidate`` rows.
    ``qvecs``: raw student vectors ``(n_eval, d) float32`` in ``data.eval_queries`` order.
    Returns ``{"cycles": [frozen, prior, adapted(, candidate)], "decisions", ...}`` in the
    shape :func:`~antigravity.harness.benchmark.aggregate` merges (rows keep ``_per_query``)."""
    from antigravity.engine import AntigravityEngine

    s = settings.model_copy(deep=True)
    s.store.location = ":memory:"
    s.store.collection = f"feedback_bench_{seed}"
    s.adaptation.seed = seed
    s.mode = "baseline"
    engine = AntigravityEngine(s, encoder=encoder)
    try:
        t0 = time.perf_counter()
        engine.ingest(({"_id": d, "text": t} for d, t in zip(data.doc_ids, data.doc_texts)), batch_size=512)
        ingest_time = time.perf_counter() - t0
        frozen_run = adapters_run(engine, data, qvecs, (None, None))
        frozen = evaluate_per_query(data.eval_qrels, frozen_run)
        prior = evaluate_per_query(data.eval_qrels, boosted_run(frozen_run, data.seen_docs, boost))
        fb_rows = simulated_click_rows(engine, data, seed) if kind == "clicks" else data.feedback_rows(s.feedback.max_relevance)
        n_rows = engine.feedback_batch(fb_rows)
        t1 = time.perf_counter()
        try:
            rep = engine.train_on_feedback(alpha=alpha, seed=seed, split_seed=seed, config=recipe)
            reason, promoted, candidate, metrics = rep.reason, bool(rep.promoted), rep.candidate, rep.metrics
            gate = {"current": rep.gate_current, "candidate": rep.gate_candidate}
        except AdaptationError as exc:  # too little feedback to train: served = frozen, recorded
            reason, promoted, candidate, metrics, gate = f"not trained: {exc}", False, None, {}, {}
        train_time = time.perf_counter() - t1
        served = engine.served_version
        adapted = evaluate_adapters(engine, data, qvecs, (served.query_adapter, served.doc_adapter))
        extra = {"gate": reason, "promoted": promoted}
        rows = [_row(frozen, "frozen", {}), _row(prior, "prior", {"boost": boost}), _row(adapted, "adapted", {**extra, "adapter_version": served.version})]
        decision: dict[str, Any] = {"seed": seed, "promoted": promoted, "reason": reason, "trained": candidate is not None,
                                    "n_feedback_rows_stored": n_rows, "n_feedback_events": len(fb_rows), "train_time_s": train_time, "gate_held_out_ndcg@10": gate,
                                    **{k: metrics.get(k) for k in ("n_feedback_queries", "n_train", "n_held_out", "n_gate_queries", "split_seed")}}
        if candidate is not None:
            cand = evaluate_adapters(engine, data, qvecs, candidate)
            rows.append(_row(cand, "candidate", extra))
            for st in FEEDBACK_STRATA:
                ids = data.stratum(st)
                decision[f"delta_{st}"] = float(np.mean([cand[q]["ndcg@10"] - frozen[q]["ndcg@10"] for q in ids])) if ids else None
            d = decision[f"delta_{FEEDBACK_HEADLINE}"]
            decision["correct"] = None if d is None else bool(promoted == (d > 0))
        return {"cycles": rows, "pretrained": None, "pretraining_time_s": None, "ingest_time_s": ingest_time, "latency_ms": {},
                "decisions": [decision], "teacher_failures": dict(engine.stats().get("teacher_failures", {}))}
    finally:
        engine.store.close()  # the shared encoder stays loaded for the next seed


def run_feedback_corpus(settings: Settings, src: CorpusSource, *, seeds: list[int], encoder, alpha: float, recipe: FeedbackConfig,
                        boost: float = PRIOR_BOOST, say: Callable[[str], None] = logger.info, kind: str = "train") -> dict[str, Any]:
    """Every seed on one corpus; ``rows`` = :data:`ROWS` merged over seeds
    (:func:`~antigravity.harness.benchmark.aggregate` with :data:`FEEDBACK_STRATA`)."""
    datas = [feedback_split(src, sd) for sd in seeds]
    t0 = time.perf_counter()
    encoder.encode(src.doc_texts, show_progress=True)
    encode_time = time.perf_counter() - t0
    per_seed = []
    for sd, data in zip(seeds, datas):
        p = data.protocol
        say(f"{src.name}: feedback {kind}, seed {sd} ({p['n_feedback_queries']} feedback queries, {p['n_eval']} evaluation queries: {p['n_eval_seen']} seen, {p['n_eval_never_seen']} never seen)")
        qvecs = encoder.encode(list(data.eval_queries.values()))
        per_seed.append(run_feedback_seed(settings, data, sd, encoder, qvecs, alpha=alpha, recipe=recipe, boost=boost, kind=kind))
    merged = aggregate(per_seed, seeds, datas, strata=FEEDBACK_STRATA)
    rows = {r["cycle"]: r for r in merged["cycles"]}
    return {
        "task": src.name, "split": src.split, "split_kind": src.kind, "seeds": seeds, "n_docs": len(src.doc_ids),
        "feedback_source": datas[0].protocol["feedback_source"],
        "duplicates_rule": "feedback queries equal (normalised) to an evaluation query are dropped from the feedback" if src.kind == "train"
        else "evaluation queries equal (normalised) to a feedback query are dropped from the evaluation",
        "protocol_per_seed": [d.protocol for d in datas], "corpus_encode_time_s": encode_time, "ingest_time_s": merged["ingest_time_s"],
        "rows": rows, "decisions": merged["decisions"], "teacher_failures": merged["teacher_failures"],
    }


def apply_feedback_holm(corpora: dict[str, dict[str, Any]]) -> int:
    """Holm-correct, in place, every paired p-value of every non-frozen row × stratum × corpus
    (``p_holm`` beside ``p``); returns the family size."""
    slots = [row["strata"][st]["paired"] for res in corpora.values() for name, row in res["rows"].items() if name != "frozen"
             for st in FEEDBACK_STRATA if "paired" in row["strata"][st]]
    for slot, ph in zip(slots, holm([s["p"] for s in slots])):
        slot["p_holm"] = ph
    return len(slots)


def summarise_feedback(corpora: dict[str, dict[str, Any]], tol: float = 0.005) -> dict[str, Any]:
    """Per non-frozen row, on the headline stratum: mean Δ over corpora, the worst per-seed Δ
    (and where), corpora improved / held (within ± ``tol``) / worse; gate decisions promoted and correct."""
    out: dict[str, Any] = {"stratum": FEEDBACK_HEADLINE, "tolerance": tol, "rows": {}}
    for name in ROWS[1:]:
        deltas, worst, worst_at = {}, None, None
        for cname, res in corpora.items():
            row = res["rows"].get(name)
            if row is None:
                continue
            st = row["strata"][FEEDBACK_HEADLINE]
            deltas[cname] = st.get("delta")
            for sd, d in st.get("delta_per_seed", {}).items():
                if worst is None or d < worst:
                    worst, worst_at = d, f"{cname} seed {sd}"
        vals = [v for v in deltas.values() if v is not None]
        out["rows"][name] = {"mean_delta": float(np.mean(vals)) if vals else None, "delta_by_corpus": deltas, "worst_delta_seed": worst, "worst_at": worst_at,
                             "improved": sum(v > tol for v in vals), "held": sum(abs(v) <= tol for v in vals), "worse": sum(v < -tol for v in vals)}
    decisions = [d for res in corpora.values() for d in res["decisions"]]
    scored = [d for d in decisions if d.get("correct") is not None]
    out["gate"] = {"n": len(decisions), "trained": sum(d["trained"] for d in decisions), "promoted": sum(d["promoted"] for d in decisions),
                   "scored": len(scored), "correct": sum(d["correct"] for d in scored)}
    return out


def run_feedback_benchmark(settings: Settings, *, task: str | None, data_dir: str | list[str] | None, split: str, seeds: list[int],
                           feedback: str = "train", boost: float = PRIOR_BOOST, recipe: FeedbackConfig | None = None,
                           progress: Callable[[str], None] | None = None, encoder=None) -> dict[str, Any]:
    """Run the feedback protocol (module doc) on a task and/or BEIR folders.

    ``encoder`` replaces the student named in ``settings`` (tests pass a stub).

    Returns:
        ``{"protocol": "feedback", "feedback", "student", "student_precision", "alpha", "recipe",
        "prior_boost", "seeds", "strata", "headline_stratum", "holm_family_size", "corpora":
        {name: {"rows": {row: merged row}, "decisions", "protocol_per_seed", ...}}, "summary"}``;
        a merged row has ``ndcg@10`` (all queries, mean over seeds), ``std``, ``per_seed``,
        ``strata`` → ``{"ndcg@10", "std", "delta", "delta_per_seed", "paired": {"p", "p_holm", ...}}``
        and ``per_query_ndcg@10`` ``{seed: {qid: score}}``.

    Raises:
        ConfigurationError: unknown ``feedback``, no corpus, no evaluation qrels, α < 1 without a
            teacher, no seed or a negative or repeated one, serving-time fusion or prior on (the
            rows score the unfused ranking), a task with folders, two folders of one name.
            DatasetError: unreadable folder; NoJudgmentsError: a seed that leaves no evaluation
            query. EmptyCorpusError: a corpus without documents.
    """
    from antigravity.harness.benchmark import NoJudgmentsError, check_serving_unfused, validate_seeds

    validate_feedback_kind(feedback)
    validate_seeds(seeds)  # as run_benchmark: a repeated seed would count its decision twice and report a spread of 0
    check_serving_unfused(settings, "the feedback benchmark")
    say = progress or (lambda msg: logger.info(msg))
    alpha = feedback_alpha(settings)
    if alpha < 1 and not (settings.teacher.name or settings.teacher.base_url):
        raise ConfigurationError(f"feedback alpha = {alpha} < 1 needs a teacher: set teacher.name or teacher.base_url, or feedback.alpha = 1")
    recipe = recipe or benchmark_recipe()
    sources = load_sources(task, data_dir, split)
    for src in sources:
        for sd in seeds:  # before any work: a seed that evaluates nothing would give NaN rows
            if not feedback_split(src, sd).eval_queries:
                raise NoJudgmentsError(f"{src.qrels_file or src.name}: --feedback {feedback}, seed {sd}: no evaluation query left on {src.name!r} "
                                       f"({len(src.eval_queries)} judged {split} queries; those equal to a feedback query are dropped from the evaluation)")
    own_encoder = encoder is None
    if own_encoder:
        encoder = student_encoder(settings)
    try:
        corpora = {src.name: run_feedback_corpus(settings, src, seeds=seeds, encoder=encoder, alpha=alpha, recipe=recipe, boost=boost, say=say, kind=feedback)
                   for src in sources}
    finally:
        if own_encoder:
            encoder.release()
    family = apply_feedback_holm(corpora)
    return {
        "protocol": "feedback", "feedback": feedback, "student": encoder.name,
        "student_precision": getattr(encoder, "precision", "bf16" if getattr(encoder, "bf16", False) else "fp32"),
        "teacher": settings.teacher.name if alpha < 1 else None, "alpha": alpha, "recipe": vars(recipe),
        "recipe_source": "chosen on SciFact held-out TRAIN feedback queries (benchmarks/feedback_scifact.py --sweep), not on test",
        "prior_boost": boost, "seeds": seeds, "strata": list(FEEDBACK_STRATA), "headline_stratum": FEEDBACK_HEADLINE,
        "holm_family_size": family, "corpora": corpora, "summary": summarise_feedback(corpora),
        **({"click_model": dict(CLICK_MODEL), "propensity": settings.feedback.propensity, "propensity_eta": settings.feedback.propensity_eta,
            "propensity_clip": settings.feedback.propensity_clip} if feedback == "clicks" else {}),
    }


FEEDBACK_COLUMNS = ("corpus", "row", "NDCG@10 all", "Δ all (p Holm)", "seen", "Δ seen (p Holm)", f"{FEEDBACK_HEADLINE} (headline)",
                    f"Δ {FEEDBACK_HEADLINE} (p Holm)", f"Δ {FEEDBACK_HEADLINE} per seed", "gate")


def feedback_table_rows(result: dict[str, Any]) -> list[list[str]]:
    """The result as table rows (:data:`FEEDBACK_COLUMNS`): mean ± sample std over seeds, Δ vs
    frozen with the Holm-corrected p, per stratum."""
    out = []
    for cname, res in result["corpora"].items():
        for name in ROWS:
            row = res["rows"].get(name)
            if row is None:
                continue
            cells = [cname, name]
            for st in FEEDBACK_STRATA:
                x = row["strata"][st]
                cells.append(_fmt(x.get("ndcg@10"), x.get("std", {}).get("ndcg@10")) + f" (n {x.get('n_queries', 0)})")
                pt = x.get("paired")
                cells.append("" if name == "frozen" or not pt else f"{_fmt(x['delta'], sign=True)} ({pt.get('p_holm', pt['p']):.3g})")
            head = row["strata"][FEEDBACK_HEADLINE]
            cells.append("" if name == "frozen" else " / ".join(f"{d:+.4f}" for d in head.get("delta_per_seed", {}).values()))
            promoted = row.get("promoted")
            cells.append(f"{sum(bool(x) for x in promoted)}/{len(promoted)} promoted" if isinstance(promoted, list) else ("" if promoted is None else ("promoted" if promoted else "rejected")))
            out.append(cells)
    return out
