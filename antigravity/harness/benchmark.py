"""The benchmark protocol: index BEIR corpora, adapt as a deployment would, score held-out
queries per mode, cycle, seed and stratum. Written up in ``docs/protocol.md``.

* **Splits.** A corpus with a ``train`` qrels split (SciFact) adapts on the TRAIN query texts;
  a corpus with test judgments only is split per seed into an *adaptation half* (query texts
  only, never their judgments; unjudged queries of ``queries.jsonl`` join it) and an
  *evaluation half*. Evaluation queries are searched with ``record=False`` and never feed
  adaptation.
* **Labels.** ``labels="none"``: no qrels anywhere on the adaptation side — every adaptation
  text is traffic, and every gate and stopping rule is label-free
  (:mod:`antigravity.adaptation.gates`). ``labels="dev"``: a seeded ``dev_fraction`` of the adaptation
  queries keeps its qrels for the labelled dev gate, the rest is traffic.
* **No evaluation text in adaptation.** Adaptation texts (traffic, dev, pseudo-queries) whose
  case/whitespace-normalised form equals an evaluation text are dropped and counted; the
  engine gets the evaluation texts' fingerprints (``engine.runner.exclude``) so the label-free
  gate's own pseudo-queries (``gate.min_judged_texts``) never copy one either.
* **Strata.** Every row is reported on all evaluation queries and on two strata: with and
  without a near-duplicate (token Jaccard ≥ 0.8 over lower-cased ``\\w+`` tokens) among the
  adaptation texts. ``no_near_dup`` is the headline.
* **Cross-fitting** (``--cross-fit``, opt-in): a test-only corpus also runs each seed with
  its halves swapped, and the two folds' evaluation halves are scored together, so every
  judged query is evaluated once per seed by the run that never saw its text — twice the
  evaluation queries per seed-level Δ (a corpus with a train split runs once). Each fold's
  gate decisions are scored on its own evaluation half.
* **Seeds** vary the split (dev slice or adaptation/evaluation halves), the traffic order,
  the pseudo-query sample and the adapter initialisation. Spread is the sample std
  (ddof = 1) of per-seed means; p-values come from paired t-tests of per-query NDCG@10
  (mean over seeds) against the frozen student, Holm-corrected across all rows of a run.
* **Traffic volume.** ``pseudo_queries = N`` adds N label-free texts made from the corpus
  (titles and abstract sentences; never an evaluation query or a judgment) to the traffic.
* **Decisions.** Every gate decision (offline pre-training and each cycle) is scored: the
  candidate — promoted or not — and the version it would replace are evaluated on the
  evaluation queries; a decision is correct when it promoted a candidate that gained on the
  headline stratum or rejected one that did not.

Cycle 0 is always the frozen student; every mode starts from an identically built fresh store.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from antigravity.datasets import doc_text, load_beir, load_task, get_task, qrels_file, resolve_task_dir
from antigravity.core.errors import ConfigurationError, DatasetError
from antigravity.evaluation import METRICS, evaluate_per_query, holm, paired_test
from antigravity.settings import Settings, effective_settings

logger = logging.getLogger(__name__)

ALL_MODES = ("baseline", "offline", "hybrid")
LABELS = ("none", "dev")
STRATA = ("all", "no_near_dup", "near_dup")
HEADLINE = "no_near_dup"
NEAR_DUP_JACCARD = 0.8
#: the development suite (``../shared/data``): folder names, SciFact first
DEV_SUITE = ("scifact", "med", "cacm", "npl", "lisa", "time")

class NoJudgmentsError(DatasetError, ConfigurationError):
    """A corpus has no judged query to evaluate in the requested split (its qrels file is empty
    or header only), or a seed's split would evaluate none: the metrics would be the mean of
    nothing (NaN). A :class:`DatasetError` naming the qrels file; also a
    :class:`ConfigurationError`, as the split (``--split``) may be what is wrong."""


def normalise(text: str) -> str:
    """Case- and whitespace-normalised text (the exact-duplicate test of the protocol)."""
    return " ".join(text.lower().split())


def near_duplicates(eval_texts: dict[str, str], adapt_texts: list[str], threshold: float = NEAR_DUP_JACCARD) -> set[str]:
    """Ids of evaluation queries with an adaptation text of token Jaccard ``>= threshold``."""
    from antigravity.adaptation.gates import near_duplicate_mask

    ids = list(eval_texts)
    mask = near_duplicate_mask([eval_texts[q] for q in ids], adapt_texts, threshold)
    return {q for q, m in zip(ids, mask) if m}


@dataclass
class CorpusSource:
    """A corpus loaded once for every seed: documents, evaluation split, adaptation split.
    ``kind`` is ``"train"`` (a separate adaptation split with qrels) or ``"half"`` (test
    judgments only: halves drawn per seed)."""

    name: str
    split: str
    kind: str
    doc_ids: list[str]
    doc_texts: list[str]
    doc_fields: dict[str, dict[str, str]]
    eval_queries: dict[str, str]
    eval_qrels: dict[str, dict[str, int]]
    adapt_queries: dict[str, str]
    adapt_qrels: dict[str, dict[str, int]]
    extra_queries: dict[str, str] = field(default_factory=dict)  # unjudged: traffic only
    qrels_file: str = ""  # the evaluation split's qrels file (named by errors)


@dataclass
class BenchmarkData:
    """One seed's split of a :class:`CorpusSource`: evaluation queries and qrels, traffic texts
    (``adapt_queries``, in traffic order, no labels), the dev gate's queries/qrels
    (``labels="dev"`` only), corpus ``pseudo`` queries, and the protocol counts."""

    name: str
    split: str
    doc_ids: list[str]
    doc_texts: list[str]
    eval_queries: dict[str, str]
    eval_qrels: dict[str, dict[str, int]]
    adapt_queries: dict[str, str]
    dev_queries: dict[str, str]
    dev_qrels: dict[str, dict[str, int]]
    pseudo: list[str] = field(default_factory=list)
    near_dup: set[str] = field(default_factory=set)
    protocol: dict[str, Any] = field(default_factory=dict)

    @property
    def traffic(self) -> list[str]:
        """Every label-free adaptation text: traffic queries, then pseudo-queries."""
        return [*self.adapt_queries.values(), *self.pseudo]

    def stratum(self, name: str) -> list[str]:
        """Evaluation query ids of stratum ``name`` (one of :data:`STRATA`)."""
        if name == "all":
            return list(self.eval_queries)
        near = name == "near_dup"
        return [q for q in self.eval_queries if (q in self.near_dup) == near]


def load_source(task: str | None, data_dir: str | None, split: str = "test", adapt_split: str = "train") -> CorpusSource:
    """Load a registered task or a BEIR folder once (see the module doc for ``kind``).

    Raises:
        NoJudgmentsError: the evaluation split's qrels judge no query (names the file).
    """
    if task:
        spec = get_task(task)
        adapt_split = spec.adapt_split
        ds = load_task(task, data_dir, splits=tuple(dict.fromkeys((split, adapt_split))))
        root = None
    else:
        if not data_dir:
            raise ConfigurationError("give --task or --data-dir")
        root = Path(data_dir).expanduser()
        has_adapt = adapt_split != split and any((root / "qrels" / f"{adapt_split}.tsv{z}").exists() for z in ("", ".gz"))
        ds = load_beir(root, splits=(split, adapt_split) if has_adapt else (split,))
    qfile = str(qrels_file(root if root is not None else resolve_task_dir(task, data_dir, verify=False), split))
    eval_qrels = ds.qrels[split]
    if not eval_qrels:
        raise NoJudgmentsError(f"{qfile}: the corpus {ds.name!r} has no {split} qrels to evaluate on (the file judges no query: empty or header only)")
    eval_queries = ds.split_queries(split)
    missing = [q for q in eval_qrels if q not in eval_queries]
    if missing:
        raise ConfigurationError(f"{len(missing)} {split} qrels queries have no text, e.g. {missing[0]!r}")
    doc_ids = list(ds.corpus)
    common = dict(name=ds.name, split=split, doc_ids=doc_ids, doc_texts=[doc_text(ds.corpus[d]) for d in doc_ids], doc_fields=ds.corpus, qrels_file=qfile)
    if adapt_split in ds.qrels and adapt_split != split:
        return CorpusSource(kind="train", eval_queries=eval_queries, eval_qrels=eval_qrels, adapt_queries=ds.split_queries(adapt_split), adapt_qrels=ds.qrels[adapt_split], **common)
    judged = set(eval_qrels)
    extra = {q: t for q, t in ds.queries.items() if q not in judged}
    return CorpusSource(kind="half", eval_queries=eval_queries, eval_qrels=eval_qrels, adapt_queries={}, adapt_qrels={}, extra_queries=extra, **common)


def split_for_seed(src: CorpusSource, seed: int, *, labels: str = "none", dev_fraction: float = 0.3, pseudo_queries: int = 0, fold: int = 0) -> BenchmarkData:
    """The seed's split of ``src`` under the protocol (module doc). Deterministic in ``seed``
    (numpy PCG64). ``fold=1`` swaps the halves of a test-only corpus (cross-fitting: the
    adaptation half of fold 0 is evaluated, the evaluation half adapts); fold 0 is the split
    every earlier run used.

    Raises:
        ConfigurationError: unknown ``labels``; ``fold`` not 0 or 1; ``fold=1`` on a corpus
            with a train split (nothing to swap).
    """
    if labels not in LABELS:
        raise ConfigurationError(f"labels = {labels!r}: choose from {', '.join(LABELS)}")
    if fold not in (0, 1) or (fold and src.kind != "half"):
        raise ConfigurationError(f"fold = {fold!r}: 0, or 1 on a corpus with test judgments only (split kind {src.kind!r})")
    rng = np.random.Generator(np.random.PCG64(seed))
    if src.kind == "train":
        eval_q, eval_r = src.eval_queries, src.eval_qrels
        pool_ids = sorted(src.adapt_queries)
        pool, pool_qrels = src.adapt_queries, src.adapt_qrels
        extra: dict[str, str] = {}
    else:
        judged = sorted(src.eval_queries)
        perm = rng.permutation(len(judged))
        half = len(judged) // 2
        adapt_idx, eval_idx = (perm[:half], perm[half:]) if fold == 0 else (perm[half:], perm[:half])
        pool_ids = sorted(judged[i] for i in adapt_idx)
        eval_ids = set(judged[i] for i in eval_idx)
        eval_q = {q: t for q, t in src.eval_queries.items() if q in eval_ids}
        eval_r = {q: src.eval_qrels[q] for q in eval_q}
        pool, pool_qrels = src.eval_queries, src.eval_qrels
        extra = src.extra_queries
    eval_norm = {normalise(t) for t in eval_q.values()}
    dropped = 0
    dev_q: dict[str, str] = {}
    dev_r: dict[str, dict[str, int]] = {}
    if labels == "dev":
        # same draw as the earlier protocol for seed 0: PCG64(seed).permutation of the sorted ids
        dev_rng = np.random.Generator(np.random.PCG64(seed))
        dev_idx = set(dev_rng.permutation(len(pool_ids))[: int(round(dev_fraction * len(pool_ids)))].tolist())
    else:
        dev_idx = set()
    traffic: list[tuple[str, str]] = []
    for i, qid in enumerate(pool_ids):
        if normalise(pool[qid]) in eval_norm:
            dropped += 1
        elif i in dev_idx:
            dev_q[qid], dev_r[qid] = pool[qid], pool_qrels[qid]
    dev_norm = {normalise(t) for t in dev_q.values()}  # a dev text is never also traffic
    for i, qid in enumerate(pool_ids):
        n = normalise(pool[qid])
        if i not in dev_idx and n not in eval_norm:
            if n in dev_norm:
                dropped += 1
            else:
                traffic.append((qid, pool[qid]))
    for qid, t in extra.items():
        if normalise(t) in eval_norm or normalise(t) in dev_norm:
            dropped += 1
        else:
            traffic.append((qid, t))
    order = rng.permutation(len(traffic))
    adapt = {traffic[i][0]: traffic[i][1] for i in order}
    pseudo: list[str] = []
    if pseudo_queries > 0:
        from antigravity.adaptation.corpus_queries import pseudo_queries as make_pseudo

        has_titles = any(f.get("title") for f in src.doc_fields.values())
        n_titles = pseudo_queries // 4 if has_titles else 0
        cand = make_pseudo(src.doc_fields, n_titles, pseudo_queries - n_titles, seed)
        seen = set(eval_norm) | {normalise(t) for t in adapt.values()} | {normalise(t) for t in dev_q.values()}
        for t in cand:
            n = normalise(t)
            if n in eval_norm:
                dropped += 1
            elif n not in seen:
                seen.add(n)
                pseudo.append(t)
    near = near_duplicates(eval_q, [*adapt.values(), *dev_q.values(), *pseudo])
    empty = {d for d, t in zip(src.doc_ids, src.doc_texts) if not t.strip()}
    unscorable = {  # evaluated, but no ranking can score them: nothing judged relevant, or every relevant document empty (never returned)
        "n_eval_without_relevant": sum(1 for q in eval_q if not any(g > 0 for g in eval_r.get(q, {}).values())),
        "n_eval_relevant_only_empty": sum(1 for q in eval_q if (rel := [d for d, g in eval_r.get(q, {}).items() if g > 0]) and set(rel) <= empty),
    }
    if any(unscorable.values()):
        logger.warning("%s (seed %d): %s of the %d evaluation queries can score nothing; counted in the protocol, kept in the means (as pytrec_eval/BEIR do)", src.name, seed, unscorable, len(eval_q))
    protocol = {
        "split_kind": src.kind, "labels": labels, "seed": seed, "fold": fold, "n_eval": len(eval_q), "n_traffic": len(adapt), "n_dev": len(dev_q),
        "n_pseudo": len(pseudo), "n_dropped_exact_duplicates": dropped, "n_eval_near_dup": len(near), "n_eval_no_near_dup": len(eval_q) - len(near),
    } | unscorable
    if src.kind == "half":  # which judged queries this seed (and fold) evaluates, and which of them are near-duplicates
        protocol |= {"eval_ids": sorted(eval_q), "near_dup_ids": sorted(near)}
    return BenchmarkData(src.name, src.split, src.doc_ids, src.doc_texts, eval_q, eval_r, adapt, dev_q, dev_r, pseudo, near, protocol)


def prepare_data(
    task: str | None, data_dir: str | None, split: str = "test", dev_fraction: float = 0.3, adapt_split: str = "train", *, seed: int = 0, labels: str = "dev", pseudo_queries: int = 0
) -> BenchmarkData:
    """Load and split in one call (scripts): :func:`load_source` then :func:`split_for_seed`.
    With the defaults (seed 0, ``labels="dev"``) the dev slice is the earlier protocol's."""
    return split_for_seed(load_source(task, data_dir, split, adapt_split), seed, labels=labels, dev_fraction=dev_fraction, pseudo_queries=pseudo_queries)


def run_for(engine, queries: dict[str, str], qvecs: np.ndarray, k: int = 100) -> dict[str, dict[str, float]]:
    """Search ``qvecs`` (raw student vectors, rows in ``queries`` order) without recording."""
    hits = engine.search_vectors(qvecs, k=k, record=False)
    return {qid: {h.doc_id: h.score for h in hs} for qid, hs in zip(queries, hits)}


def latency_ms(engine, texts: list[str], n: int = 100) -> dict[str, float]:
    """Single-query end-to-end ``search`` latency (encode + adapter + store) in ms: p50, p99."""
    times = []
    for t in texts[:n]:
        t0 = time.perf_counter()
        engine.search(t, k=10, record=False)
        times.append((time.perf_counter() - t0) * 1000)
    return {"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99))} if times else {}


def _row(per_query: dict[str, dict[str, float]], cycle: Any, extra: dict[str, Any]) -> dict[str, Any]:
    row = {"cycle": cycle}
    for m in METRICS:
        row[m] = float(np.mean([v[m] for v in per_query.values()]))
    row.update(extra)
    row["_per_query"] = per_query
    return row


def evaluate_engine(engine, data: BenchmarkData, qvecs: np.ndarray, cycle: Any, extra: dict[str, Any], *, through_store: bool = False) -> dict[str, Any]:
    """One row: metrics of the served version on the evaluation queries, per-query scores
    under ``_per_query``, plus ``extra``. Scored by exact search over the stored raw vectors
    with the served adapters — the ranking the engine serves (``tests/test_protocol.py``
    checks equality with the engine's own search) — or, with ``through_store``, through the
    engine's search (``record=False``). Evaluation never feeds traffic either way."""
    t0 = time.perf_counter()
    if through_store:
        per_query = evaluate_per_query(data.eval_qrels, run_for(engine, data.eval_queries, qvecs))
    else:
        served = engine.served_version
        per_query = evaluate_adapters(engine, data, qvecs, (served.query_adapter, served.doc_adapter))
    row = _row(per_query, cycle, {"query_time_s": time.perf_counter() - t0, "sediment_time_s": extra.pop("sediment_time_s", 0.0)})
    row.update(extra)
    return row


def adapters_run(engine, data: BenchmarkData, qvecs: np.ndarray, adapters: tuple, k: int = 100) -> dict[str, dict[str, float]]:
    """The top-``k`` run ``{qid: {doc_id: cosine}}`` of the evaluation queries (raw vectors
    ``qvecs (n, d) float32``, rows in ``data.eval_queries`` order) under an adapter pair
    ``(query, doc)`` (``(None, None)``: the frozen student) that need not be served: exact
    search over the stored raw vectors, the same ranking the engine would serve."""
    from antigravity.adaptation.gates import ranked_run

    doc_ids, D = engine.raw_matrix()
    empty = {d for d, t in zip(data.doc_ids, data.doc_texts) if not t}
    if empty:  # empty documents are stored but never served (antigravity.core.documents)
        keep = [i for i, d in enumerate(doc_ids) if d not in empty]
        doc_ids, D = [doc_ids[i] for i in keep], D[keep]
    return ranked_run(list(data.eval_queries), qvecs, doc_ids, D, *adapters, k=k)


def evaluate_adapters(engine, data: BenchmarkData, qvecs: np.ndarray, adapters: tuple) -> dict[str, dict[str, float]]:
    """Per-query metrics of an adapter pair ``(query, doc)`` that need not be served
    (:func:`adapters_run`)."""
    return evaluate_per_query(data.eval_qrels, adapters_run(engine, data, qvecs, adapters))


def _decision(engine, data: BenchmarkData, qvecs: np.ndarray, report, stage: str) -> dict[str, Any] | None:
    """Score a gate decision: the candidate and the version it would replace, on the
    evaluation queries, per stratum (NDCG@10 deltas candidate − current)."""
    if report is None or getattr(report, "candidate", None) is None or "gate disabled" in report.reason:
        return None
    cur = evaluate_adapters(engine, data, qvecs, report.current)
    cand = evaluate_adapters(engine, data, qvecs, report.candidate)
    out = {"stage": stage, "promoted": bool(report.promoted), "reason": report.reason}
    gm = report.metrics.get("gate_metrics") or {}
    if gm.get("judged_texts") is not None:  # label-free judge gate: texts judged for this decision, traffic vs pseudo-queries
        out["judged_texts"] = gm["judged_texts"]
    if gm.get("delta") is not None:  # the gate's own estimate (judge or dev labels) and its one-sided p
        out["gate_delta"], out["gate_p"] = float(gm["delta"]), float(gm["p"])
    for key in ("by_source", "also", "risk"):  # gate.diagnostics: the judge per text source, other judges, risk-sensitive gains
        if gm.get(key):
            out[f"gate_{key}"] = gm[key]
    diff = {q: cand[q]["ndcg@10"] - cur[q]["ndcg@10"] for q in cur}
    out["per_query_delta"] = {q: round(v, 6) for q, v in diff.items()}
    for key in ("best_epoch", "stopping_curve", "watched_curve"):  # offline pre-training's early stopping
        if report.metrics.get(key) is not None:
            out[key] = report.metrics[key]
    for st in STRATA:
        ids = data.stratum(st)
        out[f"delta_{st}"] = float(np.mean([diff[q] for q in ids])) if ids else None
    d = out[f"delta_{HEADLINE}"]
    out["correct"] = None if d is None else bool(report.promoted == (d > 0))
    return out


def run_mode(mode: str, settings: Settings, data: BenchmarkData, seed: int, cycles: int, encoder, qvecs, latency_texts) -> dict[str, Any]:
    """Build a fresh in-memory engine for ``mode`` (``baseline``, ``offline``, ``hybrid`` or
    ``hybrid@w``), ingest the corpus, then evaluate the frozen student, offline pre-training
    (offline mode) and each cycle. With ``data.dev_queries`` the labelled dev gate is used,
    otherwise the label-free gate. Returns ``{"cycles", "pretrained", "decisions",
    "pretraining_time_s", "ingest_time_s", "latency_ms"}``; rows keep per-query scores under
    ``_per_query``."""
    from antigravity.engine import AntigravityEngine
    from antigravity.modes import get_mode

    s = settings.model_copy(deep=True)
    s.store.location = ":memory:"
    s.store.collection = f"bench_{mode.replace('@', '_w')}_{seed}"
    s.adaptation.seed = seed
    base_mode, _, weight = mode.partition("@")
    s.mode = base_mode
    if weight:
        s.teacher.weight = float(weight)
    engine = AntigravityEngine(s, encoder=encoder)
    engine.runner.exclude(list(data.eval_queries.values()))  # the gate's pseudo-queries never copy an evaluation text
    try:
        t0 = time.perf_counter()
        engine.ingest(({"_id": d, "text": t} for d, t in zip(data.doc_ids, data.doc_texts)), batch_size=512)
        ingest_time = time.perf_counter() - t0
        if data.dev_queries:
            dev_ids = list(data.dev_queries)
            engine.set_validation(dev_ids, None, data.dev_qrels, queries=[data.dev_queries[q] for q in dev_ids])
        rows = [evaluate_engine(engine, data, qvecs, 0, {}, through_store=True)]  # the frozen row through the store
        lat = {"cycle_0": latency_ms(engine, latency_texts)}
        decisions = []
        pretraining = pretrained_row = None
        traffic = data.traffic
        if get_mode(engine.settings).pretrains:
            t1 = time.perf_counter()
            rep = engine.run_offline_distillation(traffic)
            pretraining = time.perf_counter() - t1
            logger.info("offline distillation: %s", rep.reason)
            pretrained_row = evaluate_engine(engine, data, qvecs, "pretrained", {"gate": rep.reason, "promoted": rep.promoted, "adapter_version": engine.served_version.version})
            decisions.append(_decision(engine, data, qvecs, rep, "pretrain"))
            lat["pretrained"] = latency_ms(engine, latency_texts)
        if cycles > 0:
            vecs = encoder.encode(traffic) if traffic else np.zeros((0, encoder.dim), np.float32)
            chunks = np.array_split(np.arange(len(traffic)), cycles)
            top_k = engine.settings.adaptation.signal_top_k
            for c, chunk in enumerate(chunks, 1):
                if len(chunk):
                    engine.search_vectors(vecs[chunk], k=top_k, record=True, texts=[traffic[i] for i in chunk])
                rep = engine.run_sedimentation_cycle()
                rows.append(evaluate_engine(engine, data, qvecs, c, {"sediment_time_s": rep.time_s, "gate": rep.reason, "promoted": rep.promoted, "adapter_version": engine.served_version.version, "n_signals": rep.n_signals}))
                decisions.append(_decision(engine, data, qvecs, rep, f"cycle {c}"))
            lat[f"cycle_{cycles}"] = latency_ms(engine, latency_texts)
        return {
            "pretraining_time_s": pretraining, "cycles": rows, "pretrained": pretrained_row, "ingest_time_s": ingest_time,
            "latency_ms": lat, "decisions": [d for d in decisions if d is not None], "teacher_failures": dict(engine.stats().get("teacher_failures", {})),
        }
    finally:
        engine.store.close()  # the shared encoder stays loaded for the next run


def _stratum_stats(rows: list[dict[str, Any]], bases: list[dict[str, Any]], datas: list[Any], stratum: str) -> dict[str, Any]:
    """Means over seeds of one row on one stratum, sample std (ddof = 1), per-seed deltas vs
    the frozen row of the same seed with their own paired two-sided t-test (``p_per_seed``), and
    a paired t-test of per-query NDCG@10 deltas (each query's delta averaged over the seeds that
    evaluate it)."""
    per_seed: list[dict[str, float]] = []
    p_seed: list[float] = []
    seeds: list[int] = []
    deltas: dict[str, list[float]] = {}
    for row, base, data in zip(rows, bases, datas):
        ids = data.stratum(stratum)
        if not ids:
            continue
        pq, bq = row["_per_query"], base["_per_query"]
        per_seed.append({m: float(np.mean([pq[q][m] for q in ids])) for m in METRICS} | {"delta": float(np.mean([pq[q]["ndcg@10"] - bq[q]["ndcg@10"] for q in ids])), "n": len(ids)})
        seeds.append(data.protocol["seed"])
        p_seed.append(paired_test({q: bq[q]["ndcg@10"] for q in ids}, {q: pq[q]["ndcg@10"] for q in ids})["p"])
        for q in ids:
            deltas.setdefault(q, []).append(pq[q]["ndcg@10"] - bq[q]["ndcg@10"])
    if not per_seed:
        return {"n_queries": 0}
    out: dict[str, Any] = {m: float(np.mean([p[m] for p in per_seed])) for m in METRICS}
    out["delta"] = float(np.mean([p["delta"] for p in per_seed]))
    out["delta_per_seed"] = {str(sd): p["delta"] for sd, p in zip(seeds, per_seed)}
    out["p_per_seed"] = {str(sd): p for sd, p in zip(seeds, p_seed)}
    out["n_per_seed"] = {str(sd): p["n"] for sd, p in zip(seeds, per_seed)}
    out["n_queries"] = int(np.mean([p["n"] for p in per_seed]))
    if len(per_seed) > 1:
        out["std"] = {m: float(np.std([p[m] for p in per_seed], ddof=1)) for m in (*METRICS, "delta")}
    mean_d = {q: float(np.mean(v)) for q, v in deltas.items()}
    out["paired"] = paired_test({q: 0.0 for q in mean_d}, mean_d)
    return out


def _merge_fields(rows: list[dict[str, Any]], skip: tuple[str, ...]) -> dict[str, Any]:
    """The public fields of ``rows[0]`` (not in ``skip``, not ``_``-prefixed) over ``rows``
    (seeds, or one seed's folds): numbers averaged, anything else (gate reason, ``promoted``)
    as one value per row — the value itself when there is one row."""
    out: dict[str, Any] = {}
    for k, v in rows[0].items():
        if k in skip or k.startswith("_"):
            continue
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = float(np.mean([r[k] for r in rows]))
        else:
            out[k] = v if len(rows) == 1 else [r.get(k) for r in rows]
    return out


def aggregate(per_seed: list[dict[str, Any]], seeds: list[int], datas: list[Any], strata: tuple[str, ...] = STRATA) -> dict[str, Any]:
    """Merge one mode's per-seed results (``datas[i]`` is seed ``seeds[i]``'s split: anything
    with ``stratum(name) -> [qid]`` and ``protocol["seed"]``): each row gets means over seeds
    (all evaluation queries, for the table), ``std`` (ddof = 1), ``per_seed``, ``strata``
    (:func:`_stratum_stats` per name in ``strata``) and ``per_query_ndcg@10``
    ``{seed: {qid: score}}``; ``decisions`` lists every gate decision of every seed."""
    out: dict[str, Any] = {
        "pretraining_time_s": _mean_or_none([r["pretraining_time_s"] for r in per_seed]),
        "ingest_time_s": float(np.mean([r["ingest_time_s"] for r in per_seed])),
        "latency_ms": per_seed[0]["latency_ms"],
        "decisions": [{**d, "seed": sd} for r, sd in zip(per_seed, seeds) for d in r["decisions"]],
        "teacher_failures": [r["teacher_failures"] for r in per_seed],
        "cycles": [],
    }
    bases = [r["cycles"][0] for r in per_seed]

    def merge(rows: list[dict[str, Any]]) -> dict[str, Any]:
        row: dict[str, Any] = {"cycle": rows[0]["cycle"], **_merge_fields(rows, skip=("cycle",))}
        if len(rows) > 1:
            row["std"] = {m: float(np.std([r[m] for r in rows], ddof=1)) for m in METRICS}
        row["per_seed"] = {str(sd): {m: r[m] for m in METRICS} for sd, r in zip(seeds, rows)}
        row["strata"] = {st: _stratum_stats(rows, bases, datas, st) for st in strata}
        row["per_query_ndcg@10"] = {str(sd): {q: v["ndcg@10"] for q, v in r["_per_query"].items()} for sd, r in zip(seeds, rows)}
        return row

    n_cycles = min(len(r["cycles"]) for r in per_seed)
    out["cycles"] = [merge([r["cycles"][c] for r in per_seed]) for c in range(n_cycles)]
    if per_seed[0].get("pretrained") is not None:
        out["pretrained"] = merge([r["pretrained"] for r in per_seed])
    return out


def merge_fold_data(datas: list[BenchmarkData]) -> BenchmarkData:
    """One seed's cross-fitted folds as one evaluation split: the union of their evaluation
    queries, qrels and near-duplicate sets (each judged query once, scored by the fold that
    never adapted on it). Adaptation fields are fold 0's (unused after the runs); the protocol
    gives the seed, the summed evaluation counts and each fold's own protocol under ``folds``.

    Raises:
        ValueError: no folds, or folds whose evaluation halves overlap.
    """
    if not datas:
        raise ValueError("no folds to merge")
    seen: set[str] = set()
    for d in datas:
        if seen & set(d.eval_queries):
            raise ValueError(f"folds share evaluation queries, e.g. {sorted(seen & set(d.eval_queries))[0]!r}")
        seen |= set(d.eval_queries)
    first = datas[0]
    union = lambda name: {k: v for d in datas for k, v in getattr(d, name).items()}  # noqa: E731
    protocol = {k: first.protocol[k] for k in ("split_kind", "labels", "seed")} | {"fold": "cross-fit", "folds": [d.protocol for d in datas]}
    protocol |= {k: sum(d.protocol[k] for d in datas) for k in ("n_eval", "n_eval_near_dup", "n_eval_no_near_dup", "n_eval_without_relevant", "n_eval_relevant_only_empty")}
    return BenchmarkData(
        first.name, first.split, first.doc_ids, first.doc_texts, union("eval_queries"), union("eval_qrels"), first.adapt_queries,
        first.dev_queries, first.dev_qrels, first.pseudo, set().union(*(d.near_dup for d in datas)), protocol,
    )


def _merge_fold_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from the folds' rows of one seed: metrics over the union of their per-query
    scores; other numbers (times, ``n_signals``) averaged as :func:`aggregate` does over
    seeds; every other field (``gate`` reason, ``promoted``) as a list, one entry per fold."""
    per_query = {q: v for r in rows for q, v in r["_per_query"].items()}
    return _row(per_query, rows[0]["cycle"], _merge_fields(rows, skip=("cycle", *METRICS)))


def merge_folds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One seed's :func:`run_mode` results over its cross-fitted folds (same mode, seed and
    cycles) as one result of the same shape: rows merged per cycle (:func:`_merge_fold_rows`),
    decisions of every fold tagged with ``fold`` (0, 1), pre-training and ingest times averaged,
    ``latency_ms`` fold 0's (the same engine and texts' size), teacher failures summed.

    Raises:
        ValueError: no runs, or runs with different numbers of cycles or only one pre-trained.
    """
    if not runs:
        raise ValueError("no folds to merge")
    if len({len(r["cycles"]) for r in runs}) > 1 or len({r["pretrained"] is None for r in runs}) > 1:
        raise ValueError(f"folds ran different stages: cycles {[len(r['cycles']) for r in runs]}, pre-trained {[r['pretrained'] is not None for r in runs]}")
    failures: dict[str, int] = {}
    for r in runs:
        for k, v in r["teacher_failures"].items():
            failures[k] = failures.get(k, 0) + v
    return {
        "pretraining_time_s": float(np.mean([r["pretraining_time_s"] for r in runs])) if runs[0]["pretraining_time_s"] is not None else None,
        "cycles": [_merge_fold_rows([r["cycles"][c] for r in runs]) for c in range(len(runs[0]["cycles"]))],
        "pretrained": _merge_fold_rows([r["pretrained"] for r in runs]) if runs[0]["pretrained"] is not None else None,
        "ingest_time_s": float(np.mean([r["ingest_time_s"] for r in runs])),
        "latency_ms": runs[0]["latency_ms"],
        "decisions": [{**d, "fold": f} for f, r in enumerate(runs) for d in r["decisions"]],
        "teacher_failures": failures,
    }


def adapted_rows(mode_result: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a mode that involve adaptation: offline pre-training, then cycles 1..n."""
    return [r for r in [mode_result.get("pretrained"), *mode_result["cycles"][1:]] if r is not None]


def _mean_or_none(vals: list[float | None]) -> float | None:
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else None


def decision_accuracy(decisions: list[dict[str, Any]]) -> dict[str, Any]:
    """How often the gate's promote/reject matched the sign of the headline-stratum test change:
    ``{"n", "correct", "accuracy", "promoted", "promoted_and_worse"}`` (accuracy None when n = 0)."""
    scored = [d for d in decisions if d.get("correct") is not None]
    n = len(scored)
    return {
        "n": n, "correct": sum(d["correct"] for d in scored), "accuracy": (sum(d["correct"] for d in scored) / n) if n else None,
        "promoted": sum(d["promoted"] for d in scored), "promoted_and_worse": sum(1 for d in scored if d["promoted"] and d[f"delta_{HEADLINE}"] < 0),
    }


def apply_holm(corpora: dict[str, dict[str, Any]]) -> None:
    """Holm-correct, in place, every paired p-value of every adapted row and stratum of a run
    (``p_holm`` beside ``p``)."""
    slots = [row["strata"][st]["paired"] for res in corpora.values() for m in res["modes"].values() for row in adapted_rows(m) for st in STRATA if "paired" in row["strata"][st]]
    for slot, ph in zip(slots, holm([s["p"] for s in slots])):
        slot["p_holm"] = ph


def summarise(corpora: dict[str, dict[str, Any]], tol: float = 0.005) -> dict[str, Any]:
    """Across corpora, per mode, on the headline stratum: mean Δ NDCG@10 of the last row,
    worst per-seed Δ over every adapted row (pre-training and every cycle) and corpus with
    that row-seed's own paired two-sided p (``worst_p``, uncorrected; None in results written
    before ``p_per_seed`` was recorded) and evaluation-query count, how many row-seeds fell
    below ``-tol`` and how many of those are significant at 0.05 after Holm over the mode's
    row-seeds (``rows_below_tolerance``, ``rows_significantly_worse``), how many corpora
    improved / held / got worse (last row's mean Δ beyond ± ``tol``), and the gate's decision
    accuracy."""
    modes = sorted({m for res in corpora.values() for m in res["modes"]}, key=lambda m: (ALL_MODES.index(m.split("@")[0]), m))
    out: dict[str, Any] = {"tolerance": tol, "stratum": HEADLINE, "modes": {}}
    all_decisions = []
    for mode in modes:
        last, decisions = {}, []
        row_seeds: list[tuple[float, float | None, int | None, str]] = []  # (Δ, p, n, where)
        for name, res in corpora.items():
            m = res["modes"].get(mode)
            if m is None:
                continue
            rows = adapted_rows(m)
            if not rows:
                continue
            last[name] = rows[-1]["strata"][HEADLINE].get("delta")
            for row in rows:
                st = row["strata"][HEADLINE]
                for sd, d in st.get("delta_per_seed", {}).items():
                    row_seeds.append((d, st.get("p_per_seed", {}).get(sd), st.get("n_per_seed", {}).get(sd), f"{name} {row['cycle']} seed {sd}"))
            decisions += m["decisions"]
        vals = [v for v in last.values() if v is not None]
        worst = min(row_seeds, key=lambda r: r[0], default=(None, None, None, None))
        below = [r for r in row_seeds if r[0] < -tol]
        ps = [r[1] for r in row_seeds]
        sig = sum(1 for r, ph in zip(row_seeds, holm(ps)) if r[0] < -tol and ph < 0.05) if ps and None not in ps else None
        out["modes"][mode] = {
            "mean_delta_last": float(np.mean(vals)) if vals else None, "delta_last_by_corpus": last,
            "worst_delta_any_row_seed": worst[0], "worst_at": worst[3], "worst_p": worst[1], "worst_n_queries": worst[2],
            "rows_below_tolerance": len(below), "rows_significantly_worse": sig,
            "improved": sum(v > tol for v in vals), "held": sum(abs(v) <= tol for v in vals), "worse": sum(v < -tol for v in vals),
            "decision_accuracy": decision_accuracy(decisions),
        }
        all_decisions += decisions
    out["decision_accuracy"] = decision_accuracy(all_decisions)
    return out


def resolve_data_dirs(data_dirs: list[str] | None, suite: str | None, suite_root: str | None = None) -> list[str]:
    """``--data-dir`` values plus the folders of a named suite (``dev``: :data:`DEV_SUITE`
    under ``suite_root``, default ``../shared/data`` beside the checkout or ``$ANTIGRAVITY_SUITE_ROOT``)."""
    import os

    dirs = list(data_dirs or [])
    if suite:
        if suite != "dev":
            raise ConfigurationError(f"unknown suite {suite!r}; known: dev ({', '.join(DEV_SUITE)})")
        root = Path(suite_root or os.environ.get("ANTIGRAVITY_SUITE_ROOT") or Path(__file__).resolve().parents[2] / "shared" / "data")
        if not root.is_dir():
            raise ConfigurationError(f"suite root {str(root)!r} does not exist; set ANTIGRAVITY_SUITE_ROOT")
        dirs += [str(root / name) for name in DEV_SUITE]
    return dirs


def check_corpus_choice(task: str | None, dirs: list[str]) -> None:
    """A task or BEIR folders, not both; folders distinct by resolved path and by name.

    Raises:
        ConfigurationError: a task together with folders (a folder would be benchmarked under
            the task's name without the task's checks); one folder given twice; two folders
            with the same name (the second would replace the first in the results, which are
            keyed by folder name). TaskNotFoundError: an unknown task given with folders (named in the refusal).
    """
    if task and dirs:
        spec = get_task(task)
        raise ConfigurationError(
            f"--task {task} and --data-dir/--suite {dirs[0]!r} together: use --data-dir alone to benchmark a folder (named after it), "
            f"or --task alone; {spec.env_var}=DIR relocates the {spec.name} task's files"
        )
    by_path: dict[Path, str] = {}
    by_name: dict[str, str] = {}
    for d in dirs:
        p = Path(d).expanduser()
        rp = p.resolve()
        if rp in by_path:
            raise ConfigurationError(f"--data-dir {by_path[rp]!r} and {d!r} are the same folder ({str(rp)!r}): give it once")
        if p.name in by_name:
            raise ConfigurationError(
                f"--data-dir {by_name[p.name]!r} and {d!r} have the same folder name {p.name!r}, which names a corpus in the results: "
                "the second would replace the first; copy or link one under another name"
            )
        by_path[rp], by_name[p.name] = d, d


def load_sources(task: str | None, data_dir: str | list[str] | None, split: str) -> list[CorpusSource]:
    """The task, or every BEIR folder, each loaded once (:func:`load_source`).

    Raises:
        ConfigurationError: neither a task nor a folder; a task and folders; the same folder
            twice or two folders of one name (:func:`check_corpus_choice`).
        NoJudgmentsError: a corpus whose evaluation qrels judge no query (names the file).
        EmptyCorpusError: a corpus without documents.
    """
    dirs = [data_dir] if isinstance(data_dir, str) else list(data_dir or [])
    check_corpus_choice(task, dirs)
    sources = [load_source(task, None, split)] if task else [load_source(None, d, split) for d in dirs]
    if not sources:
        raise ConfigurationError("give a task or at least one data folder")
    for src in sources:
        if not src.doc_ids:
            from antigravity.core.errors import EmptyCorpusError

            raise EmptyCorpusError(f"the corpus {src.name!r} is empty")
    return sources


def student_encoder(settings: Settings):
    """The student :class:`~antigravity.encoders.model.Encoder` named in ``settings.student``
    (shared by every engine of a benchmark run; the caller releases it)."""
    from antigravity.encoders.model import Encoder

    s = settings.student
    return Encoder(s.name, cache_dir=settings.resolved_cache_dir, batch_size=s.batch_size, bf16=s.bf16, max_seq_length=s.max_seq_length)


def corpus_splits(settings: Settings, src: CorpusSource, seeds: list[int], *, labels: str, pseudo_queries: int, cross_fit: bool = False) -> list[list[BenchmarkData]]:
    """Per seed, its splits of ``src`` (:func:`split_for_seed`): fold 0, and fold 1 when
    ``cross_fit`` on a test-only corpus. No encoding: :func:`run_benchmark` makes every
    corpus's splits before the first corpus is encoded.

    Raises:
        NoJudgmentsError: a seed (or fold) whose split evaluates no query (names the qrels file).
    """
    folds = (0, 1) if cross_fit and src.kind == "half" else (0,)
    fold_datas = [[split_for_seed(src, sd, labels=labels, dev_fraction=settings.benchmark.dev_fraction, pseudo_queries=pseudo_queries, fold=f) for f in folds] for sd in seeds]
    for d in (d for fd in fold_datas for d in fd):
        if not d.eval_queries:  # every metric would be the mean of nothing (NaN)
            raise NoJudgmentsError(f"{src.qrels_file or src.name}: seed {d.protocol['seed']}, fold {d.protocol['fold']} leaves no evaluation query "
                                   f"({len(src.eval_queries)} judged {src.split} queries)")
    return fold_datas


def run_corpus(
    settings: Settings, src: CorpusSource, *, modes: list[str], seeds: list[int], cycles: int, labels: str, pseudo_queries: int, encoder, say: Callable[[str], None],
    cross_fit: bool = False, fold_datas: list[list[BenchmarkData]] | None = None,
) -> dict[str, Any]:
    """Every mode × seed on one corpus under one label setting (see :func:`run_benchmark`).
    With ``cross_fit`` a test-only corpus runs each seed twice, halves swapped, and scores
    every judged query (:func:`merge_folds`); a corpus with a train split runs once.
    ``fold_datas``: the splits already made by :func:`corpus_splits` (made here when ``None``)."""
    if fold_datas is None:
        fold_datas = corpus_splits(settings, src, seeds, labels=labels, pseudo_queries=pseudo_queries, cross_fit=cross_fit)
    datas = [fd[0] if len(fd) == 1 else merge_fold_data(fd) for fd in fold_datas]
    every = [d for fd in fold_datas for d in fd]
    result: dict[str, Any] = {
        "task": src.name, "split": src.split, "split_kind": src.kind, "labels": labels, "seeds": seeds, "n_docs": len(src.doc_ids), "folds": len(fold_datas[0]),
        "n_queries_eval": int(np.mean([len(d.eval_queries) for d in datas])), "n_queries_adapt": int(np.mean([len(d.adapt_queries) for d in every])),
        "n_queries_dev": int(np.mean([len(d.dev_queries) for d in every])), "protocol_per_seed": [d.protocol for d in every], "modes": {},
    }
    t0 = time.perf_counter()
    encoder.encode(src.doc_texts, show_progress=True)
    result["corpus_encode_time_s"] = time.perf_counter() - t0
    for mode in modes:
        per_seed = []
        for sd, fd in zip(seeds, fold_datas):
            runs = []
            for data in fd:
                fold = f", fold {data.protocol['fold']}" if len(fd) > 1 else ""
                say(f"{src.name}: labels {labels}, mode {mode}, seed {sd}{fold} ({len(data.traffic)} traffic texts, {len(data.eval_queries)} evaluation queries)")
                qvecs = encoder.encode(list(data.eval_queries.values()))
                runs.append(run_mode(mode, settings, data, sd, cycles, encoder, qvecs, list(data.eval_queries.values())))
            per_seed.append(runs[0] if len(runs) == 1 else merge_folds(runs))
        result["modes"][mode] = aggregate(per_seed, seeds, datas)
    return result


def validate_seeds(seeds: list[int], what: str = "seeds") -> list[int]:
    """``seeds``: a non-empty list of integers >= 0 (numpy's PCG64 refuses negative seeds, late),
    each once (a repeated seed runs twice: its decisions count twice, the spread between the
    copies is 0, and per-seed results are keyed by seed). Both benchmarks use it.

    Raises:
        ConfigurationError: names the offending value.
    """
    if not seeds:
        raise ConfigurationError(f"{what} is empty")
    seen: set[int] = set()
    for sd in seeds:
        if isinstance(sd, bool) or not isinstance(sd, (int, np.integer)) or sd < 0:
            raise ConfigurationError(f"{what}: seed {sd!r} must be an integer >= 0")
        if sd in seen:
            raise ConfigurationError(f"{what}: seed {sd} is given twice (it would run twice and count its decisions twice)")
        seen.add(int(sd))
    return list(seeds)


def check_serving_unfused(settings: Settings, what: str = "the benchmark") -> None:
    """The benchmarks score the adapter ranking (exact search over the stored vectors), not a
    ranking fused at serving time: refuse settings that make the engine serve another one.

    Raises:
        ConfigurationError: ``teacher.fusion_weight > 0`` or ``feedback.prior_boost > 0``.
    """
    for key, value in (("teacher.fusion_weight", settings.teacher.fusion_weight), ("feedback.prior_boost", settings.feedback.prior_boost)):
        if value > 0:
            raise ConfigurationError(
                f"{key} = {value:g}: {what} scores the unfused adapter ranking, not the fused ranking the engine would serve; "
                f"set {key} = 0, or score served fused rankings with the MTEB adapter (antigravity/harness/mteb_search.py)"
            )


def hybrid_run(weight: float) -> str:
    """The run name of the hybrid mode at teacher weight ``weight`` (``"hybrid@0.3"``): two
    weights with one name are one run."""
    return f"hybrid@{weight:g}"


def check_benchmark_settings(settings: Settings, modes: list[str], teacher_weights: list[float] | None = None) -> None:
    """Everything :func:`run_benchmark` would otherwise find out after encoding a corpus: the
    serving settings (:func:`check_serving_unfused`), each mode (``hybrid@w`` too) against the
    teacher settings, and the teacher weights (each in [0, 1], distinct as mode names, only
    with ``hybrid`` among the modes).

    Raises:
        ConfigurationError: names the mode, weight or setting.
    """
    from antigravity.adaptation.distillation import validate_teacher_weight

    check_serving_unfused(settings)
    if not modes:
        raise ConfigurationError(f"no modes; choose from {', '.join(ALL_MODES)}")
    if teacher_weights is not None:
        if not teacher_weights:
            raise ConfigurationError("teacher weights: empty list (omit it to use teacher.weight)")
        if "hybrid" not in modes:
            raise ConfigurationError(f"teacher weights {list(teacher_weights)} are used by the hybrid mode only, which is not among the modes {list(modes)}: add hybrid or drop the weights")
        seen: dict[str, Any] = {}
        for w in teacher_weights:
            validate_teacher_weight(w)
            key = hybrid_run(w)
            if key in seen:
                raise ConfigurationError(f"teacher weights {seen[key]!r} and {w!r} are the same run {key}: give each weight once")
            seen[key] = w
    for mode in modes:
        base, _, weight = str(mode).partition("@")
        if base not in ALL_MODES:
            raise ConfigurationError(f"unknown mode {mode!r}; choose from {', '.join(ALL_MODES)}")
        over: dict[str, Any] = {"mode": base}
        if weight:
            try:
                over["teacher__weight"] = validate_teacher_weight(float(weight))
            except ValueError:
                raise ConfigurationError(f"mode {mode!r}: teacher weight {weight!r} must be a number in [0, 1]") from None
        try:
            settings.with_overrides(**over)
        except ConfigurationError as exc:
            raise ConfigurationError(f"benchmark mode {mode!r}: {exc}") from None


def run_benchmark(
    settings: Settings,
    *,
    task: str | None,
    data_dir: str | list[str] | None,
    split: str,
    modes: list[str],
    seeds: list[int],
    cycles: int,
    teacher_weights: list[float] | None = None,
    labels: list[str] | tuple[str, ...] = ("none",),
    pseudo_queries: int = 0,
    progress: Callable[[str], None] | None = None,
    encoder=None,
    cross_fit: bool = False,
) -> dict[str, Any]:
    """Run the protocol (module doc) on a task and/or BEIR folders, for each label setting.

    ``teacher_weights`` expands hybrid into one run per weight (``hybrid@0.3``, …);
    ``encoder`` replaces the student named in ``settings`` (tests pass a stub);
    ``cross_fit`` scores every judged query of a test-only corpus (module doc, "Cross-fitting").

    Returns:
        ``{"student", "teacher", "cycles", "seeds", "modes", "pseudo_queries", "runs": {labels:
        {"corpora": {name: corpus result}, "summary": ...}}}``; a corpus result has ``modes``
        → ``{"cycles": [rows], "pretrained": row, "decisions": [...]}`` (see docs/protocol.md).

    Raises:
        ConfigurationError: no corpus, unknown label setting, a mode the teacher settings
            cannot run, teacher weights without hybrid, serving-time fusion or prior on, a bad
            seed, a task with folders, two folders of one name (checked before any work).
        DatasetError: unreadable folder; NoJudgmentsError: no judged evaluation query, or a
            seed's split evaluating none (every corpus's splits are checked before any is encoded).
        EmptyCorpusError: a corpus without documents.
    """
    say = progress or (lambda msg: logger.info(msg))
    bad = [lb for lb in labels if lb not in LABELS]
    if bad or not labels:
        raise ConfigurationError(f"labels {bad or labels!r}: choose from {', '.join(LABELS)}")
    check_benchmark_settings(settings, modes, teacher_weights)
    validate_seeds(seeds)
    sources = load_sources(task, data_dir, split)
    if cross_fit:
        for src in sources:
            if src.kind == "half" and len(src.eval_queries) < 2:  # fold 1 evaluates the smaller half: none
                raise NoJudgmentsError(f"{src.qrels_file}: --cross-fit needs at least 2 judged {split} queries on {src.name!r}, got {len(src.eval_queries)} "
                                       "(the swapped fold would evaluate none)")
    # every corpus's splits, checked before the first corpus is encoded (NoJudgmentsError)
    splits = {(lb, src.name): corpus_splits(settings, src, seeds, labels=lb, pseudo_queries=pseudo_queries, cross_fit=cross_fit) for lb in labels for src in sources}
    if teacher_weights and "hybrid" in modes:
        i = modes.index("hybrid")
        modes = modes[:i] + [hybrid_run(w) for w in teacher_weights] + modes[i + 1 :]
    own_encoder = encoder is None
    if own_encoder:
        encoder = student_encoder(settings)
    result: dict[str, Any] = {
        "student": encoder.name,
        "student_precision": getattr(encoder, "precision", "bf16" if getattr(encoder, "bf16", False) else "fp32"),
        "teacher": settings.teacher.name if any(m.split("@")[0] in ("offline", "hybrid") for m in modes) else None,
        "cycles": cycles, "seeds": seeds, "modes": modes, "pseudo_queries": pseudo_queries, "cross_fit": cross_fit, "headline_stratum": HEADLINE,
        "settings": effective_settings(settings), "runs": {},
    }
    for lb in labels:
        corpora = {}
        for src in sources:
            corpora[src.name] = run_corpus(settings, src, modes=modes, seeds=seeds, cycles=cycles, labels=lb, pseudo_queries=pseudo_queries, encoder=encoder, say=say, cross_fit=cross_fit,
                                         fold_datas=splits[lb, src.name])
        apply_holm(corpora)
        result["runs"][lb] = {"corpora": corpora, "summary": summarise(corpora)}
    if own_encoder:
        encoder.release()
    return result


def strip_private(obj: Any) -> Any:
    """Drop ``_``-prefixed keys (per-seed scratch data) before writing JSON."""
    if isinstance(obj, dict):
        return {k: strip_private(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, list):
        return [strip_private(v) for v in obj]
    return obj


TABLE_COLUMNS = ("mode", "stage", "NDCG@10 (all)", f"NDCG@10 ({HEADLINE})", "Δ (no_near_dup)", "p Holm", "Δ (near_dup)", "Δ per seed (no_near_dup)", "Recall@100", "MRR@10", "gate")


def _fmt(v: float | None, std: float | None = None, sign: bool = False) -> str:
    if v is None:
        return "–"
    s = f"{v:+.4f}" if sign else f"{v:.4f}"
    return s + (f" ± {std:.4f}" if std is not None else "")


def _flat(v: Any) -> list[Any]:
    """``v`` as a flat list (a value, a list per seed, or a list per seed of lists per fold)."""
    return [y for x in v for y in _flat(x)] if isinstance(v, list) else [v]


def table_rows(corpus: dict[str, Any]) -> list[list[str]]:
    """One corpus result as table rows (:data:`TABLE_COLUMNS`), used by the CLI table and
    ``benchmarks/report.py`` alike."""
    out = []
    for mode, res in corpus["modes"].items():
        base = res["cycles"][0]
        rows = [("frozen student", base)]
        if res.get("pretrained"):
            rows.append(("offline pre-trained", res["pretrained"]))
        rows += [(f"cycle {r['cycle']}", r) for r in res["cycles"][1:]]
        for label, row in rows:
            head, near = row["strata"][HEADLINE], row["strata"]["near_dup"]
            std = row.get("std", {})
            promoted = _flat(row.get("promoted"))  # per seed, and per fold when cross-fitted
            gate = "" if row is base else (f"{sum(bool(x) for x in promoted)}/{len(promoted)} promoted" if len(promoted) > 1 else ("promoted" if any(promoted) else "rejected"))
            pt = head.get("paired", {})
            out.append([
                mode, label, _fmt(row["ndcg@10"], std.get("ndcg@10")), _fmt(head.get("ndcg@10"), head.get("std", {}).get("ndcg@10")) + f" (n {head.get('n_queries', 0)})",
                "" if row is base else _fmt(head.get("delta"), sign=True), "" if row is base or not pt else f"{pt.get('p_holm', pt['p']):.3g}",
                "" if row is base or not near.get("n_queries") else _fmt(near.get("delta"), sign=True),
                "" if row is base else " / ".join(f"{d:+.4f}" for d in head.get("delta_per_seed", {}).values()),
                _fmt(row["recall@100"]), _fmt(row["mrr@10"]), gate,
            ])
    return out


SUMMARY_COLUMNS = ("mode", "mean Δ last row", "worst Δ (any row, seed, corpus)", "where", "row-seeds below −tol (Holm-significant)", "improved / held / worse", "gate decisions correct")


def _worst_cell(m: dict[str, Any]) -> str:
    """``−0.0148 (p 0.16, n 26)``: the worst row-seed's Δ with its own paired two-sided p."""
    cell = _fmt(m["worst_delta_any_row_seed"], sign=True)
    if m.get("worst_p") is not None:
        cell += f" (p {m['worst_p']:.2g}, n {m['worst_n_queries']})"
    return cell


def summary_rows(summary: dict[str, Any]) -> list[list[str]]:
    """The cross-corpus summary as rows (:data:`SUMMARY_COLUMNS`), headline stratum."""
    out = []
    for mode, m in summary["modes"].items():
        da = m["decision_accuracy"]
        out.append([
            mode, _fmt(m["mean_delta_last"], sign=True), _worst_cell(m), str(m["worst_at"]),
            f"{m.get('rows_below_tolerance', '')}" + (f" ({m['rows_significantly_worse']})" if m.get("rows_significantly_worse") is not None else ""),
            f"{m['improved']} / {m['held']} / {m['worse']}", f"{da['correct']}/{da['n']}" + (f" ({da['accuracy']:.2f})" if da["accuracy"] is not None else ""),
        ])
    da = summary["decision_accuracy"]
    out.append(["all modes", "", "", "", "", "", f"{da['correct']}/{da['n']}" + (f" ({da['accuracy']:.2f})" if da["accuracy"] is not None else "")])
    return out


def plot_ndcg(result: dict[str, Any], path: str | Path) -> None:
    """PNG: one panel per corpus and label setting, headline-stratum NDCG@10 per cycle per mode
    (mean over seeds, ± sample-std band), the frozen student dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(lb, name, res) for lb, run in result["runs"].items() for name, res in run["corpora"].items()]
    cols = min(3, len(panels))
    nrows = int(np.ceil(len(panels) / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(5.5 * cols, 3.8 * nrows), squeeze=False)
    for ax, (lb, name, res) in zip(axes.ravel(), panels):
        base = None
        for mode, m in res["modes"].items():
            rows = list(m["cycles"])
            if m.get("pretrained"):
                rows = [rows[0], {**m["pretrained"], "cycle": 0.5}, *rows[1:]]
            xs = [r["cycle"] for r in rows]
            ys = np.array([r["strata"][HEADLINE].get("ndcg@10", np.nan) for r in rows])
            sd = np.array([r["strata"][HEADLINE].get("std", {}).get("ndcg@10", 0.0) for r in rows])
            ax.plot(xs, ys, marker="o", label=mode)
            ax.fill_between(xs, ys - sd, ys + sd, alpha=0.15)
            base = ys[0]
        if base is not None:
            ax.axhline(base, color="grey", linestyle="--", label="frozen")
        ax.set_title(f"{name} — labels {lb}", fontsize=10)
        ax.set_xlabel("cycle (0.5 = offline pre-trained)")
        ax.set_ylabel(f"NDCG@10 ({HEADLINE})")
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"student {result['student']}, teacher {result['teacher']}, seeds {result['seeds']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
