"""What lexical fusion (``teacher.lexical_fusion``) costs: offline distillation and one hybrid
cycle timed with the setting on and off in the same run, alternating (on, off, off, on, …) so
load on the machine hits both alike; ratios of medians (on / off). The BM25 parts are also timed
alone: building the index over the stored texts (docs/s) and ranking texts to depth
``gates.RRF_DEPTH`` (texts/s).

    python benchmarks/fusion_cost.py --task SciFact
    python benchmarks/fusion_cost.py --data-dir ../shared/data/npl --pseudo-queries 300

Offline distillation runs every epoch (``teacher.distill_patience`` at its maximum) so both
settings train the same number of epochs; the adaptation texts are the corpus's adaptation
queries (SciFact: train claims; test-only collections: the seed-0 adaptation half) and any
``--pseudo-queries``, texts only.
Uses the embedding caches (the first run fills them; a warm-up pair is run and dropped). Prints
JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def one_run(data, student: str, teacher: str, fusion: bool, texts: list[str]) -> dict:
    """One fresh in-memory engine: offline distillation over ``texts``, then one hybrid cycle
    on ``texts`` as recorded traffic. Times in s."""
    from antigravity import AntigravityEngine
    from antigravity.core.errors import AntigravityError

    kw = dict(store__location=":memory:", student__name=student, teacher__name=teacher, teacher__lexical_fusion=fusion, teacher__distill_patience=10000)
    out: dict = {}
    with AntigravityEngine(mode="offline", **kw) as eng:
        eng.ingest(({"_id": d, "text": t} for d, t in zip(data.doc_ids, data.doc_texts)), batch_size=512)
        t0 = time.perf_counter()
        rep = eng.run_offline_distillation(texts)
        out["offline_s"] = time.perf_counter() - t0
        out["offline_epochs"] = len(rep.metrics.get("loss_curve") or [])
        out["offline_train_s"] = rep.metrics.get("train_time_s")
        failures = eng.stats().get("teacher_failures")  # present once anything failed
        if failures:
            raise AntigravityError(f"teacher failures while timing: {failures}")
    with AntigravityEngine(mode="hybrid", **kw) as eng:
        eng.ingest(({"_id": d, "text": t} for d, t in zip(data.doc_ids, data.doc_texts)), batch_size=512)
        eng.search_vectors(eng.encoder.encode(texts), k=eng.settings.adaptation.signal_top_k, texts=texts)
        t0 = time.perf_counter()
        eng.run_sedimentation_cycle()
        out["hybrid_cycle_s"] = time.perf_counter() - t0
    return out


def bm25_parts(data, texts: list[str]) -> dict:
    """The BM25 index build (docs/s) and ranking to ``RRF_DEPTH`` (texts/s), medians of 3."""
    from antigravity.adaptation.gates import RRF_DEPTH, BM25Judge

    build, rank = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        judge = BM25Judge(list(data.doc_texts))
        build.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        judge.rank(texts, RRF_DEPTH)
        rank.append(time.perf_counter() - t0)
    return {"bm25_build_s": statistics.median(build), "bm25_build_docs_per_s": len(data.doc_texts) / statistics.median(build),
            "bm25_rank_s": statistics.median(rank), "bm25_rank_texts_per_s": len(texts) / statistics.median(rank)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default=None)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--student", default="paraphrase-MiniLM-L3-v2")
    ap.add_argument("--teacher", default="all-MiniLM-L6-v2")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per setting (after one warm-up pair)")
    ap.add_argument("--pseudo-queries", type=int, default=0, help="label-free texts made from the corpus added to the adaptation texts, as antigravity benchmark --pseudo-queries")
    args = ap.parse_args()
    if (args.task is None) == (args.data_dir is None):
        ap.error("give exactly one of --task or --data-dir")

    from antigravity.harness.benchmark import prepare_data

    data = prepare_data(args.task, args.data_dir, labels="none", pseudo_queries=args.pseudo_queries)
    texts = data.traffic
    one_run(data, args.student, args.teacher, True, texts)  # warm-up: fills the embedding caches
    runs: dict[bool, list[dict]] = {True: [], False: []}
    for r in range(args.repeats):
        for fusion in ((True, False) if r % 2 == 0 else (False, True)):
            runs[fusion].append(one_run(data, args.student, args.teacher, fusion, texts))
    med = lambda fusion, k: statistics.median(x[k] for x in runs[fusion])  # noqa: E731
    out: dict = {"corpus": args.task or args.data_dir, "n_docs": len(data.doc_ids), "n_texts": len(texts), "student": args.student, "teacher": args.teacher, "repeats": args.repeats}
    out["pseudo_queries"] = args.pseudo_queries
    for k in ("offline_s", "offline_train_s", "hybrid_cycle_s"):
        out[k] = {"fusion_on": med(True, k), "fusion_off": med(False, k), "ratio_on_off": med(True, k) / med(False, k)}
    out["offline_epochs"] = {"fusion_on": [x["offline_epochs"] for x in runs[True]], "fusion_off": [x["offline_epochs"] for x in runs[False]]}
    out.update(bm25_parts(data, texts))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
