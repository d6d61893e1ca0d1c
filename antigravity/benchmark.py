"""The benchmark protocol: index a BEIR corpus, score held-out queries per mode and cycle.

Protocol (never trains, tunes or early-stops on evaluation queries):

* evaluation = the queries of ``split`` (default ``test``), searched with adaptation frozen
  and ``record=False``, so they never feed signals;
* adaptation traffic = the query *texts* of the task's adaptation split (``train``), no labels;
* the gate's labelled dev set = a fixed, seeded slice (``dev_fraction``) of the TRAIN qrels,
  held out of the traffic;
* cycle 0 is always the frozen student; every mode starts from an identically built fresh store.

Results are plain dicts in the JSON shape documented in the README.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .datasets import BeirDataset, doc_text, load_beir, load_task, get_task
from .errors import ConfigurationError
from .evaluation import METRICS, evaluate_per_query, paired_test
from .settings import Settings

logger = logging.getLogger(__name__)

ALL_MODES = ("baseline", "offline", "hybrid")


@dataclass
class BenchmarkData:
    """Everything a run needs: corpus ids/texts, evaluation queries and qrels, adaptation
    query texts (no labels) and the gate's dev queries/qrels (from the adaptation split)."""

    name: str
    split: str
    doc_ids: list[str]
    doc_texts: list[str]
    eval_queries: dict[str, str]
    eval_qrels: dict[str, dict[str, int]]
    adapt_queries: dict[str, str]
    dev_queries: dict[str, str]
    dev_qrels: dict[str, dict[str, int]]


def prepare_data(
    task: str | None, data_dir: str | None, split: str = "test", dev_fraction: float = 0.3, adapt_split: str = "train"
) -> BenchmarkData:
    """Load a task (or a BEIR dir) and split it per the protocol above.

    The dev slice is a fixed function of the adaptation split (numpy PCG64 seed 0), the same
    for every run seed, so all modes and seeds are gated on the same queries.
    """
    if task:
        spec = get_task(task)
        adapt_split = spec.adapt_split
        ds = load_task(task, data_dir, splits=tuple(dict.fromkeys((split, adapt_split))))
    else:
        if not data_dir:
            raise ConfigurationError("give --task or --data-dir")
        root = Path(data_dir).expanduser()
        has_adapt = (root / "qrels" / f"{adapt_split}.tsv").exists() or (root / "qrels" / f"{adapt_split}.tsv.gz").exists()
        splits = (split, adapt_split) if has_adapt and adapt_split != split else (split,)
        ds = load_beir(root, splits=splits)
    eval_qrels = ds.qrels[split]
    eval_queries = ds.split_queries(split)
    missing = [q for q in eval_qrels if q not in eval_queries]
    if missing:
        raise ConfigurationError(f"{len(missing)} {split} qrels queries have no text, e.g. {missing[0]!r}")
    adapt_queries: dict[str, str] = {}
    dev_queries: dict[str, str] = {}
    dev_qrels: dict[str, dict[str, int]] = {}
    if adapt_split in ds.qrels and adapt_split != split:
        train = ds.split_queries(adapt_split)
        qids = sorted(train)
        rng = np.random.Generator(np.random.PCG64(0))
        n_dev = int(round(dev_fraction * len(qids)))
        dev = set(rng.permutation(len(qids))[:n_dev].tolist())
        for i, qid in enumerate(qids):
            if i in dev:
                dev_queries[qid] = train[qid]
                dev_qrels[qid] = ds.qrels[adapt_split][qid]
            else:
                adapt_queries[qid] = train[qid]
    doc_ids = list(ds.corpus)
    return BenchmarkData(
        name=ds.name,
        split=split,
        doc_ids=doc_ids,
        doc_texts=[doc_text(ds.corpus[d]) for d in doc_ids],
        eval_queries=eval_queries,
        eval_qrels=eval_qrels,
        adapt_queries=adapt_queries,
        dev_queries=dev_queries,
        dev_qrels=dev_qrels,
    )


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


def evaluate_engine(engine, data: BenchmarkData, qvecs: np.ndarray, cycle: int, extra: dict[str, Any]) -> dict[str, Any]:
    """One cycle row: metrics on the evaluation queries plus timings."""
    t0 = time.perf_counter()
    run = run_for(engine, data.eval_queries, qvecs)
    query_time = time.perf_counter() - t0
    t1 = time.perf_counter()
    per_query = evaluate_per_query(data.eval_qrels, run)
    eval_time = time.perf_counter() - t1
    row = {"cycle": cycle}
    for m in METRICS:
        row[m] = float(np.mean([v[m] for v in per_query.values()]))
    row.update({"query_time_s": query_time, "eval_time_s": eval_time, "sediment_time_s": extra.pop("sediment_time_s", 0.0)})
    row.update(extra)
    row["_per_query"] = {q: v["ndcg@10"] for q, v in per_query.items()}
    return row


ModeRunner = Callable[..., dict[str, Any]]


def run_mode(mode: str, settings: Settings, data: BenchmarkData, seed: int, cycles: int, encoder, qvecs, latency_texts) -> dict[str, Any]:
    """Build a fresh in-memory engine for ``mode``, ingest the corpus, then evaluate cycle 0
    (frozen student) and each adaptation cycle. Returns ``{"pretraining_time_s", "cycles",
    "ingest_time_s", "latency_ms"}`` with per-query NDCG@10 kept under ``_per_query``."""
    from .engine import AntigravityEngine

    s = settings.model_copy(deep=True)
    s.store.location = ":memory:"
    s.store.collection = f"bench_{mode.replace('@', '_w')}_{seed}"
    s.adaptation.seed = seed
    base_mode, _, weight = mode.partition("@")
    s.mode = base_mode
    if weight:
        s.teacher.weight = float(weight)
    engine = AntigravityEngine(s, encoder=encoder)
    try:
        t0 = time.perf_counter()
        engine.ingest(({"_id": d, "text": t} for d, t in zip(data.doc_ids, data.doc_texts)), batch_size=512)
        ingest_time = time.perf_counter() - t0
        rows = [evaluate_engine(engine, data, qvecs, 0, {})]
        lat = {"cycle_0": latency_ms(engine, latency_texts)}
        pretraining = None
        pretrained_row = None
        if base_mode == "offline":
            from .distillation import benchmark_offline

            pretraining = benchmark_offline(engine, data)
            rep = getattr(engine, "_last_distillation", None)
            pretrained_row = evaluate_engine(engine, data, qvecs, 0, {"sediment_time_s": 0.0, "gate": rep.reason if rep else "", "adapter_version": engine.served_version.version})
            lat["pretrained"] = latency_ms(engine, latency_texts)
        if cycles > 0:
            from .sedimentation import benchmark_cycles

            rows.extend(benchmark_cycles(engine, data, qvecs, cycles, seed))
            lat[f"cycle_{cycles}"] = latency_ms(engine, latency_texts)
        return {"pretraining_time_s": pretraining, "cycles": rows, "pretrained": pretrained_row, "ingest_time_s": ingest_time, "latency_ms": lat}
    finally:
        engine.store.close()


def _aggregate_rows(rows: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """Mean over seeds of one cycle's rows, with ``std`` and ``per_seed`` when several."""
    row: dict[str, Any] = {"cycle": rows[0]["cycle"]}
    for k, v in rows[0].items():
        if k == "cycle" or k.startswith("_"):
            continue
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            row[k] = float(np.mean([r[k] for r in rows]))
        else:
            row[k] = v if len(rows) == 1 else [r.get(k) for r in rows]
    if len(rows) > 1:
        row["std"] = {m: float(np.std([r[m] for r in rows])) for m in METRICS}
        row["per_seed"] = {str(s): {m: r[m] for m in METRICS} for s, r in zip(seeds, rows)}
    row["_per_query"] = {q: float(np.mean([r["_per_query"][q] for r in rows])) for q in rows[0]["_per_query"]}
    return row


def aggregate(per_seed: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """Merge per-seed mode results: cycle metrics become means with ``std`` and ``per_seed``;
    each adapted row gets a paired t-test of its per-query NDCG@10 (seed mean) against cycle 0."""
    out: dict[str, Any] = {
        "pretraining_time_s": _mean_or_none([r["pretraining_time_s"] for r in per_seed]),
        "ingest_time_s": float(np.mean([r["ingest_time_s"] for r in per_seed])),
        "latency_ms": per_seed[0]["latency_ms"],
        "cycles": [],
    }
    n_cycles = min(len(r["cycles"]) for r in per_seed)
    out["cycles"] = [_aggregate_rows([r["cycles"][c] for r in per_seed], seeds) for c in range(n_cycles)]
    if per_seed[0].get("pretrained") is not None:
        out["pretrained"] = _aggregate_rows([r["pretrained"] for r in per_seed], seeds)
    base = out["cycles"][0]["_per_query"]
    for row in [*out["cycles"][1:], out.get("pretrained")]:
        if row is not None:
            row["paired_vs_cycle0"] = paired_test(base, row["_per_query"])
    out["per_query_ndcg@10"] = out["cycles"][-1]["_per_query"]
    return out


def _mean_or_none(vals: list[float | None]) -> float | None:
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else None


def run_benchmark(
    settings: Settings,
    *,
    task: str | None,
    data_dir: str | None,
    split: str,
    modes: list[str],
    seeds: list[int],
    cycles: int,
    teacher_weights: list[float] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the benchmark and return the result dict (see README for its keys).

    ``teacher_weights`` expands the hybrid mode into one run per weight (``hybrid@0.3``, …).
    """
    from .models import Encoder

    say = progress or (lambda msg: logger.info(msg))
    data = prepare_data(task, data_dir, split, settings.benchmark.dev_fraction)
    if not data.doc_ids:
        from .errors import EmptyCorpusError

        raise EmptyCorpusError("the corpus is empty")
    s = settings.student
    encoder = Encoder(s.name, cache_dir=settings.resolved_cache_dir, batch_size=s.batch_size, bf16=s.bf16, max_seq_length=s.max_seq_length)
    say(f"encoding {len(data.doc_ids)} documents with {encoder.name} (cached after the first run)")
    t0 = time.perf_counter()
    encoder.encode(data.doc_texts, show_progress=True)
    corpus_encode_s = time.perf_counter() - t0
    qvecs = encoder.encode(list(data.eval_queries.values()))
    result: dict[str, Any] = {
        "task": task or data.name,
        "split": split,
        "student": encoder.name,
        "teacher": settings.teacher.name if any(m in ("offline", "hybrid") for m in modes) else None,
        "cycles": cycles,
        "seeds": seeds,
        "n_docs": len(data.doc_ids),
        "n_queries_eval": len(data.eval_queries),
        "n_queries_adapt": len(data.adapt_queries),
        "n_queries_dev": len(data.dev_queries),
        "corpus_encode_time_s": corpus_encode_s,
        "modes": {},
    }
    latency_texts = list(data.eval_queries.values())
    if teacher_weights and "hybrid" in modes:
        i = modes.index("hybrid")
        modes = modes[:i] + [f"hybrid@{w:g}" for w in teacher_weights] + modes[i + 1 :]
    for mode in modes:
        per_seed = []
        for seed in seeds:
            say(f"mode {mode}, seed {seed}")
            per_seed.append(run_mode(mode, settings, data, seed, cycles, encoder, qvecs, latency_texts))
        result["modes"][mode] = aggregate(per_seed, seeds)
    encoder.release()
    return result


def strip_private(obj: Any) -> Any:
    """Drop ``_``-prefixed keys (per-seed scratch data) before writing JSON."""
    if isinstance(obj, dict):
        return {k: strip_private(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, list):
        return [strip_private(v) for v in obj]
    return obj


def plot_ndcg(result: dict[str, Any], path: str | Path) -> None:
    """PNG of NDCG@10 per cycle per mode (mean over seeds, ±std band), frozen student dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    base = None
    for mode, res in result["modes"].items():
        rows = list(res["cycles"])
        if res.get("pretrained"):
            rows = [rows[0], {**res["pretrained"], "cycle": 0.5}, *rows[1:]]
        xs = [r["cycle"] for r in rows]
        ys = np.array([r["ndcg@10"] for r in rows])
        sd = np.array([r.get("std", {}).get("ndcg@10", 0.0) for r in rows])
        ax.plot(xs, ys, marker="o", label=mode)
        ax.fill_between(xs, ys - sd, ys + sd, alpha=0.15)
        base = rows[0]["ndcg@10"]
    if base is not None:
        ax.axhline(base, color="grey", linestyle="--", label="frozen student")
    ax.set_xlabel("cycle (0 = frozen student; 0.5 = after offline pre-training)")
    ax.set_ylabel(f"NDCG@10 ({result['split']})")
    ax.set_title(f"{result['task']}: student {result['student']}, teacher {result['teacher']}, seeds {result['seeds']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
