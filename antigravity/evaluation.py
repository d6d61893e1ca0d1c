"""IR metrics through ``pytrec_eval`` (Van Gysel & de Rijke, 2018), the evaluator mteb and BEIR use.

Plain dict formats, as in BEIR/mteb: ``qrels = {qid: {doc_id: relevance}}`` and
``run = {qid: {doc_id: score}}``. Metrics are averaged over every query in ``qrels``: a
query with no retrieved documents counts as 0, never silently dropped.

* ``ndcg@10``  — pytrec_eval ``ndcg_cut_10`` (Järvelin & Kekäläinen, 2002);
* ``recall@100`` — pytrec_eval ``recall_100``;
* ``mrr@10`` — pytrec_eval ``recip_rank`` on the run truncated to each query's top 10.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pytrec_eval

METRICS = ("ndcg@10", "recall@100", "mrr@10")


def _top(run: Mapping[str, Mapping[str, float]], k: int) -> dict[str, dict[str, float]]:
    # same order pytrec_eval uses: score desc, then doc id desc
    out = {}
    for qid, docs in run.items():
        ranked = sorted(docs.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:k]
        out[qid] = {d: float(s) for d, s in ranked}
    return out


def evaluate_per_query(
    qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]]
) -> dict[str, dict[str, float]]:
    """Per-query metrics ``{qid: {"ndcg@10", "recall@100", "mrr@10"}}`` for every qid in ``qrels``."""
    qrels = {q: {d: int(r) for d, r in docs.items()} for q, docs in qrels.items()}
    run = {q: {d: float(s) for d, s in docs.items()} for q, docs in run.items() if q in qrels}
    deep = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"}).evaluate(run)
    shallow = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(_top(run, 10))
    out = {}
    for qid in qrels:
        d, s = deep.get(qid, {}), shallow.get(qid, {})
        out[qid] = {
            "ndcg@10": float(d.get("ndcg_cut_10", 0.0)),
            "recall@100": float(d.get("recall_100", 0.0)),
            "mrr@10": float(s.get("recip_rank", 0.0)),
        }
    return out


def evaluate(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Mean NDCG@10, Recall@100 and MRR@10 over the queries of ``qrels``."""
    per = evaluate_per_query(qrels, run)
    return {m: float(np.mean([v[m] for v in per.values()])) if per else 0.0 for m in METRICS}


def paired_test(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
    """Paired two-sided t-test (scipy ``ttest_rel``) of per-query scores ``b`` vs ``a``
    over their common queries: ``{"delta", "t", "p", "n"}`` (``p = 1`` when all differences are 0)."""
    from scipy import stats

    common = sorted(set(a) & set(b))
    x = np.array([a[q] for q in common])
    y = np.array([b[q] for q in common])
    diff = y - x
    if len(common) < 2 or not np.any(diff):
        return {"delta": float(diff.mean()) if len(common) else 0.0, "t": 0.0, "p": 1.0, "n": len(common)}
    res = stats.ttest_rel(y, x)
    return {"delta": float(diff.mean()), "t": float(res.statistic), "p": float(res.pvalue), "n": len(common)}


def holm(pvalues: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (Holm 1979), in the input order: sort ascending,
    ``p_(i) · (m − i)`` with a running maximum, capped at 1."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, pvalues[i] * (m - rank)))
        out[i] = running
    return out
