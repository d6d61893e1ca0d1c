"""Refit experiment (quick pair): choose the epoch count by early stopping on the dev slice
(566 train query texts for distillation), then retrain from scratch on all 809 train query
texts (566 + the 243 dev texts, unlabelled) for that many epochs, and score test.

    python benchmarks/experiments/distillation/refit_train_dev.py --seeds 0,1,2

Standard model selection then refit: test is never used for a choice. The refit run has no
honest dev score (it saw the dev texts), so a product version would gate the un-refitted
candidate and serve the refit one.
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--student", default="paraphrase-MiniLM-L3-v2")
    ap.add_argument("--teacher", default="all-MiniLM-L6-v2")
    args = ap.parse_args()
    from antigravity import AntigravityEngine
    from antigravity.harness.benchmark import prepare_data, run_for
    from antigravity.adaptation.distillation import DistillationConfig
    from antigravity.evaluation import evaluate_per_query

    data = prepare_data("SciFact", None, "test", 0.3)
    out = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        row = {"seed": seed}
        for stage in ("select", "refit"):
            e = AntigravityEngine(store__location=":memory:", student__name=args.student, teacher__name=args.teacher, adaptation__seed=seed)
            e.ingest(({"_id": d, "text": t} for d, t in zip(data.doc_ids, data.doc_texts)), batch_size=512)
            qvecs = e.encoder.encode(list(data.eval_queries.values()))
            if stage == "select":
                dev_ids = list(data.dev_queries)
                e.set_validation(dev_ids, None, data.dev_qrels, queries=[data.dev_queries[q] for q in dev_ids])
                rep = e.run_offline_distillation(list(data.adapt_queries.values()), config=DistillationConfig(seed=seed))
                row["best_epoch"] = rep.metrics["best_epoch"]
                row["dev"] = rep.metrics.get("gate_candidate")
            else:
                cfg = DistillationConfig(seed=seed, epochs=row["best_epoch"] + 1, patience=10_000)
                rep = e.run_offline_distillation(list(data.adapt_queries.values()) + list(data.dev_queries.values()), config=cfg)
            per = evaluate_per_query(data.eval_qrels, run_for(e, data.eval_queries, qvecs))
            row[f"test_{stage}"] = float(np.mean([v["ndcg@10"] for v in per.values()]))
            row[f"n_texts_{stage}"] = rep.metrics["n_texts"]
            e.close()
        print(json.dumps(row), flush=True)
        out.append(row)
    for k in ("test_select", "test_refit"):
        vals = [r[k] for r in out]
        print(f"{k}: {np.mean(vals):.4f} ± {np.std(vals):.4f}")


if __name__ == "__main__":
    main()
