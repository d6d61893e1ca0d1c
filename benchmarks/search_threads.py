"""End-to-end search throughput from 1 and 8 threads on one engine (encode + adapter + store),
with concurrent queries combined into one encoder batch (the default) and without (each
search encodes alone), in one run; ratios are what to read.

    python benchmarks/search_threads.py --student paraphrase-MiniLM-L3-v2 --queries 200 --out results/search_threads.json

SciFact corpus (5,183 documents) in an in-memory Qdrant Edge store; the SciFact test claims as
queries, k = 10, record = False. Reports queries/s per (threads, batching) and the 8-thread /
1-thread ratio (the issue's target: >= 1.6x on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time


def run(engine, queries: list[str], threads: int) -> float:
    """Queries per second when ``threads`` threads split ``queries``."""
    start = threading.Barrier(threads + 1)

    def worker(part: list[str]) -> None:
        start.wait()
        for q in part:
            engine.search(q, k=10, record=False)

    ts = [threading.Thread(target=worker, args=(queries[i::threads],)) for i in range(threads)]
    for t in ts:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    return len(queries) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", default="paraphrase-MiniLM-L3-v2")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from antigravity import AntigravityEngine
    from antigravity.datasets import doc_text, load_task

    task = load_task("SciFact")
    queries = [task.queries[q] for q in sorted(task.qrels["test"])][: args.queries]
    with AntigravityEngine(store__location=":memory:", student__name=args.student, teacher__name="none") as engine:
        engine.ingest(({"_id": d, "text": doc_text(doc)} for d, doc in task.corpus.items()), batch_size=512)
        engine.search_batch(queries[:8], record=False)  # warm-up
        direct = engine.searcher._encode
        rows = []
        for r in range(args.rounds):  # interleaved, so load changes hit every variant alike
            for batching in (True, False):
                engine.searcher._encode = direct if batching else (lambda texts: engine.encoder.encode_uncached(texts))
                for threads in (1, 8):
                    rows.append({"round": r, "batching": batching, "threads": threads, "qps": run(engine, queries, threads)})
        engine.searcher._encode = direct
        precision = engine.stats()["student_precision"]
    summary = {}
    for batching in (True, False):
        for threads in (1, 8):
            vals = sorted(x["qps"] for x in rows if x["batching"] == batching and x["threads"] == threads)
            summary[f"{'batched' if batching else 'unbatched'}_{threads}t_qps_median"] = vals[len(vals) // 2]
    for b in ("batched", "unbatched"):
        summary[f"{b}_8t_over_1t"] = summary[f"{b}_8t_qps_median"] / summary[f"{b}_1t_qps_median"]
    result = {"student": args.student, "precision": precision, "queries": len(queries), "rounds": args.rounds, "nproc": os.cpu_count(),
              "loadavg": os.getloadavg(), "rows": rows, "summary": summary}
    print(json.dumps(summary, indent=2))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
