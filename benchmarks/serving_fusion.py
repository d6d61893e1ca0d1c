"""Serving-time teacher score fusion: quality and latency (opt-in ``teacher.fusion_weight``).

    python benchmarks/serving_fusion.py --student paraphrase-MiniLM-L3-v2 --teacher all-MiniLM-L6-v2
    python benchmarks/serving_fusion.py --student all-MiniLM-L6-v2 --teacher all-mpnet-base-v2 --teacher-bf16

Protocol: the fusion weight λ is chosen on the dev slice of the TRAIN qrels (the gate's split,
``prepare_data``), then the chosen λ and λ = 0 (fusion off) are scored on the test queries.
Test NDCG@10 of every λ is printed too, for transparency, but it never picks λ. Latency: single
query ``engine.search`` p50/p99 in ms over 100 test queries, fusion off vs on, teacher query
encoding uncached (as in serving), teacher document vectors warm (computed once per document).
Writes a JSON with ``--output``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def ndcg10(engine, queries: dict[str, str], qrels) -> float:
    from antigravity.evaluation import evaluate_per_query

    ids = list(queries)
    hits = engine.search_batch([queries[q] for q in ids], k=100, record=False)
    run = {q: {h.doc_id: h.score for h in hs} for q, hs in zip(ids, hits)}
    per = evaluate_per_query(qrels, run)
    return float(np.mean([v["ndcg@10"] for v in per.values()]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="SciFact")
    ap.add_argument("--student", default="paraphrase-MiniLM-L3-v2")
    ap.add_argument("--teacher", default="all-MiniLM-L6-v2")
    ap.add_argument("--teacher-bf16", action="store_true")
    ap.add_argument("--weights", default="0.1,0.2,0.3,0.5,0.7,1.0")
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--output", default=None)
    args = ap.parse_args()

    from antigravity import AntigravityEngine
    from antigravity.harness.benchmark import latency_ms, prepare_data

    data = prepare_data(args.task, None, "test", 0.3)
    eng = AntigravityEngine(
        store__location=":memory:", student__name=args.student, teacher__name=args.teacher, teacher__bf16=args.teacher_bf16,
        teacher__fusion_candidates=args.candidates,
    )
    eng.ingest(({"_id": d, "text": t} for d, t in zip(data.doc_ids, data.doc_texts)), batch_size=512)
    dev, test = data.dev_queries, data.eval_queries
    weights = [0.0] + [float(w) for w in args.weights.split(",")]
    rows = []
    for w in weights:
        eng.settings.teacher.fusion_weight = w
        rows.append({"weight": w, "dev_ndcg@10": ndcg10(eng, dev, data.dev_qrels), "test_ndcg@10": ndcg10(eng, test, data.eval_qrels)})
        print(json.dumps(rows[-1]), flush=True)
    best = max(rows, key=lambda r: r["dev_ndcg@10"])  # chosen on dev only
    lat_texts = list(test.values())[:100]
    eng.settings.teacher.fusion_weight = 0.0
    lat_off = latency_ms(eng, lat_texts)
    eng.settings.teacher.fusion_weight = best["weight"] or weights[-1]
    lat_on = latency_ms(eng, lat_texts)
    out = {
        "task": args.task, "student": args.student, "teacher": args.teacher, "candidates": args.candidates,
        "dev_queries": len(dev), "test_queries": len(test), "rows": rows, "chosen_weight": best["weight"],
        "test_ndcg@10_off": rows[0]["test_ndcg@10"], "test_ndcg@10_chosen": best["test_ndcg@10"],
        "latency_ms_off": lat_off, "latency_ms_on": lat_on, "latency_weight": eng.settings.teacher.fusion_weight,
    }
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}))
    if args.output:
        with open(args.output, "w") as fh:
            json.dump(out, fh, indent=2)
    eng.close()


if __name__ == "__main__":
    main()
