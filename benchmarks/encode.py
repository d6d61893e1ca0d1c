"""Student encode speed per precision, against plain sentence-transformers in the same run.

    HF_HUB_OFFLINE=1 PYTHONPATH=. python benchmarks/encode.py --docs 512 --queries 50 --rounds 3 --threads 1 2 --output results/encode.json

(from the repository root; ``PYTHONPATH=.`` is only needed when the package is not installed from it)

For each model (default: paraphrase-MiniLM-L3-v2 and all-MiniLM-L6-v2, loaded through the
package's registry) it measures

* ``st-fp32``: ``sentence_transformers.SentenceTransformer(path).encode`` in fp32 — the reference;
* ``engine-fp32`` / ``engine-bf16``: :class:`antigravity.encoders.model.Encoder` with
  ``precision="fp32"`` / ``"bf16"`` (bf16 on every CPU, so a slow emulated bf16 is visible too;
  the embedding cache is off, so each round encodes for real);

as docs/s of one batch encode of ``--docs`` SciFact abstracts (title + text, batch size 32) and
the p50 latency of single-query encodes (``--queries`` SciFact test queries, one at a time).
Variants run interleaved, their order rotated each round, so a machine whose speed drifts
(other jobs) affects all alike; docs/s is the median over rounds. Ratios are against
``st-fp32`` of the same model, thread count and run. ``--threads 1 2`` repeats everything
with 1 and with 2 torch threads (on a machine shared with other jobs the two differ a lot). The JSON also records what ``precision =
"auto"`` resolves to on this CPU and why, and how close the variants' embeddings are.

sentence-transformers' ``backend="onnx"`` is not measured: it needs ``optimum``, which is not
a dependency of this package.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

MODELS = ("paraphrase-MiniLM-L3-v2", "all-MiniLM-L6-v2")


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--docs", type=int, default=512, help="SciFact documents per batch encode")
    ap.add_argument("--queries", type=int, default=50, help="single-query encodes per variant and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[2], help="torch intra-op thread counts to measure (each a full pass)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--cache-dir", default=None, help="models cache (default: ~/.antigravity/cache)")
    ap.add_argument("--output", default="results/encode.json")
    args = ap.parse_args()

    import sentence_transformers
    import torch

    from antigravity.datasets import doc_text, load_task
    from antigravity.encoders.precision import bf16_capability, cpu_has_native_bf16, resolve_precision

    cache_dir = Path(args.cache_dir or "~/.antigravity/cache").expanduser()
    ds = load_task("SciFact", splits=("test",))
    docs = [doc_text(d) for d in list(ds.corpus.values())[: args.docs]]
    queries = list(ds.split_queries("test").values())[: args.queries]

    result: dict = {
        "command": " ".join([*(f"{v}={os.environ[v]}" for v in ("HF_HUB_OFFLINE", "PYTHONPATH", "OMP_NUM_THREADS") if v in os.environ),
                             "python", Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": {
            "cpu": _cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "sentence_transformers": sentence_transformers.__version__,
            "native_bf16": cpu_has_native_bf16(), "native_bf16_from": bf16_capability(), "precision_auto_resolves_to": resolve_precision("auto"),
            "load_average_start": os.getloadavg(),
        },
        "settings": {"docs": len(docs), "queries": len(queries), "rounds": args.rounds, "batch_size": args.batch_size, "task": "SciFact (test corpus, first docs)"},
        "runs": [],
    }
    for threads in args.threads:
        torch.set_num_threads(threads)
        run = {"threads": torch.get_num_threads(), "load_average_start": os.getloadavg(), "models": {}}
        for name in args.models:
            run["models"][name] = measure(name, cache_dir, docs, queries, args.rounds, args.batch_size, threads)
        run["load_average_end"] = os.getloadavg()
        result["runs"].append(run)
    result["machine"]["load_average_end"] = os.getloadavg()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown_table(result))
    print(f"wrote {out}")


def measure(name: str, cache_dir: Path, docs: list[str], queries: list[str], rounds: int, batch_size: int, threads: int) -> dict:
    """One model's variants, interleaved over ``rounds``; rows keyed by variant."""
    from sentence_transformers import SentenceTransformer

    from antigravity.encoders.model import Encoder, resolve_model_path

    path = resolve_model_path(name, cache_dir)
    st = SentenceTransformer(path, device="cpu")
    variants = {
        "st-fp32": lambda texts, m=st: _unit(m.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)),
    }
    for p in ("fp32", "bf16"):
        enc = Encoder(name, cache_dir=cache_dir, batch_size=batch_size, precision=p, use_cache=False)
        _ = enc.model
        variants[f"engine-{p}"] = enc.encode_uncached
    # warm up every variant (first calls allocate, autocast builds its caches)
    vecs = {k: f(docs[:64]) for k, f in variants.items()}
    for f in variants.values():
        for q in queries[:5]:
            f([q])
    dps: dict[str, list[float]] = {k: [] for k in variants}
    lat: dict[str, list[float]] = {k: [] for k in variants}
    keys = list(variants)
    for r in range(rounds):
        order = keys[r % len(keys):] + keys[: r % len(keys)]
        for k in order:
            f = variants[k]
            t0 = time.perf_counter()
            f(docs)
            dps[k].append(len(docs) / (time.perf_counter() - t0))
            for q in queries:
                t0 = time.perf_counter()
                f([q])
                lat[k].append((time.perf_counter() - t0) * 1000.0)
        print(f"{name}, {threads} thread(s), round {r + 1}/{rounds}: " + ", ".join(f"{k} {dps[k][-1]:.1f} docs/s" for k in keys), flush=True)
    ref_dps, ref_p50 = statistics.median(dps["st-fp32"]), statistics.median(lat["st-fp32"])
    rows = {}
    for k in keys:
        d, p50 = statistics.median(dps[k]), statistics.median(lat[k])
        rows[k] = {
            "docs_per_s": round(d, 2), "docs_per_s_rounds": [round(x, 2) for x in dps[k]], "docs_per_s_vs_st_fp32": round(d / ref_dps, 3),
            "query_p50_ms": round(p50, 2), "query_p90_ms": round(float(np.percentile(lat[k], 90)), 2), "query_p50_vs_st_fp32": round(p50 / ref_p50, 3),
            "min_cosine_to_st_fp32": round(float((vecs[k] * vecs["st-fp32"]).sum(axis=1).min()), 5),
        }
    return rows


def markdown_table(result: dict) -> str:
    """The results as the markdown table of docs/performance.md."""
    lines = ["| threads | model | variant | docs/s | × st-fp32 | query p50 ms | × st-fp32 | min cos vs st-fp32 |", "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for run in result["runs"]:
        for name, rows in run["models"].items():
            for k, r in rows.items():
                lines.append(f"| {run['threads']} | {name} | {k} | {r['docs_per_s']:.1f} | {r['docs_per_s_vs_st_fp32']:.2f} | {r['query_p50_ms']:.1f} | {r['query_p50_vs_st_fp32']:.2f} | {r['min_cosine_to_st_fp32']:.4f} |")
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
