"""Time one sedimentation cycle over the SciFact corpus (training + gate + re-materialisation,
traffic excluded), and query latency with and without the adapter.

    python benchmarks/cycle_time.py [--student all-MiniLM-L6-v2] [--signal modality_gap]

Uses the embedding cache (run the SciFact benchmark once first to fill it). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--student", default="all-MiniLM-L6-v2")
    ap.add_argument("--signal", default="modality_gap")
    ap.add_argument("--queries", type=int, default=200, help="single-query searches timed per setting")
    args = ap.parse_args()

    from antigravity import AntigravityEngine
    from antigravity.harness.benchmark import latency_ms, prepare_data

    data = prepare_data("SciFact", None)
    out: dict = {"student": args.student, "signal": args.signal}
    with AntigravityEngine(store__location=":memory:", student__name=args.student, adaptation__signal=args.signal) as eng:
        eng.ingest(({"_id": d, "text": t} for d, t in zip(data.doc_ids, data.doc_texts)), batch_size=512)
        dev = list(data.dev_queries)
        eng.set_validation(dev, eng.encoder.encode([data.dev_queries[q] for q in dev]), data.dev_qrels)
        texts = list(data.adapt_queries.values())
        eng.search_vectors(eng.encoder.encode(texts), k=eng.settings.adaptation.signal_top_k, texts=texts)
        eval_texts = list(data.eval_queries.values())[: args.queries]
        eng.encoder.encode(eval_texts)  # warm the model

        def latency() -> dict:
            lat = latency_ms(eng, eval_texts, n=len(eval_texts))
            return {"p50_ms": lat["p50"], "p99_ms": lat["p99"]}

        eng.settings.gate.enabled = False  # time the full path, promotion included
        t0 = time.perf_counter()
        rep = eng.run_sedimentation_cycle()
        out["cycle_wall_s"] = time.perf_counter() - t0
        out["cycle"] = {k: rep.to_dict()[k] for k in ("train_time_s", "materialise_time_s", "time_s", "n_signals", "n_targets", "promoted")}
        adapted = eng.served_version
        frozen, with_adapter = [], []
        for _ in range(3):  # alternate, so load on the machine hits both alike
            eng.activate(None, None, version=0)
            frozen.append(latency())
            eng.activate(adapted.doc_adapter, adapted.query_adapter, version=adapted.version)
            with_adapter.append(latency())
        med = lambda xs, k: float(np.median([x[k] for x in xs]))  # noqa: E731
        out["latency_frozen"] = {k: med(frozen, k) for k in ("p50_ms", "p99_ms")}
        out["latency_adapted"] = {k: med(with_adapter, k) for k in ("p50_ms", "p99_ms")}
        out["latency_ratio_p50"] = out["latency_adapted"]["p50_ms"] / out["latency_frozen"]["p50_ms"]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
