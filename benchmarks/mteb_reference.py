"""Cross-check our SciFact numbers against mteb's own retrieval evaluation, fully offline.

    HF_HUB_OFFLINE=1 python benchmarks/mteb_reference.py [--student all-MiniLM-L6-v2]

Builds mteb's SciFact task from the BEIR files Antigravity ships (query ``metadata`` is never
read), encodes with the same offline model through mteb's sentence-transformers wrapper, and
prints mteb's NDCG@10 / Recall@100 / MRR@10 beside ``antigravity benchmark``'s. ~12 min on
2 cores (mteb does not use our embedding cache).
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--student", default="all-MiniLM-L6-v2")
    args = ap.parse_args()

    import mteb
    from datasets import Dataset
    from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper
    from mteb.tasks.retrieval.eng.sci_fact_retrieval import SciFact
    from sentence_transformers import SentenceTransformer

    from antigravity.datasets import load_task
    from antigravity.encoders.model import resolve_model_path

    ds = load_task("SciFact", splits=("test",))
    qrels = ds.qrels["test"]

    class ShippedSciFact(SciFact):
        def load_data(self, num_proc=None, **kwargs):  # noqa: D102 - mteb hook
            if self.data_loaded:
                return
            corpus = Dataset.from_list([{"id": d, "title": v["title"], "text": v["text"]} for d, v in ds.corpus.items()])
            queries = Dataset.from_list([{"id": q, "text": t} for q, t in ds.queries.items() if q in qrels])
            self.dataset = {"default": {"test": {"corpus": corpus, "queries": queries, "relevant_docs": qrels, "top_ranked": None}}}
            self.data_loaded = True

    model = SentenceTransformerEncoderWrapper(SentenceTransformer(resolve_model_path(args.student, os.path.expanduser("~/.antigravity/cache")), device="cpu"))
    t0 = time.perf_counter()
    res = mteb.evaluate(model, ShippedSciFact(), cache=None, co2_tracker=False, show_progress_bar=False)
    scores = res.task_results[0].scores["test"][0]
    print(json.dumps({
        "student": args.student,
        "mteb": {"ndcg@10": scores["ndcg_at_10"], "recall@100": scores["recall_at_100"], "mrr@10": scores["mrr_at_10"]},
        "time_s": time.perf_counter() - t0,
    }, indent=2))


if __name__ == "__main__":
    main()
