"""Command line: ``antigravity benchmark | index | search | get | adopt | config | feedback | adapters`` (typer + rich).

Errors from the package print one line (``error: ...``) and exit with status 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any, List, Optional

import typer
from rich.console import Console
from rich.table import Table

from antigravity.core.errors import AntigravityError, ConfigurationError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Antigravity adaptive retrieval engine.")
console = Console(stderr=True)
_state = {"debug": False}

# Options shared by several commands, declared once (same flag, default and help everywhere).
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="TOML config file")]
DataDirOpt = Annotated[Optional[Path], typer.Option("--data-dir", help="engine data dir")]
CollectionOpt = Annotated[Optional[str], typer.Option("--collection")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON lines")]


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="show tracebacks"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="log INFO messages"),
) -> None:
    _state["debug"] = debug
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _items(text: str, what: str) -> list[str]:
    """The comma-separated items of ``text``; refuses an empty list and an empty item
    (``"0,,1"``, ``","``) naming the value."""
    items = [x.strip() for x in text.split(",")]
    if not any(items):
        raise ConfigurationError(f"{what} is empty, got {text!r}")
    if not all(items):
        raise ConfigurationError(f"{what} {text!r} has an empty item: give comma-separated values")
    return items


def _ints(text: str, what: str) -> list[int]:
    """Comma-separated seeds: integers >= 0, each once (a repeated seed would run twice and
    count its decisions twice, with a spread of 0 between the copies)."""
    items = _items(text, what)
    try:
        vals = [int(x) for x in items]
    except ValueError:
        raise ConfigurationError(f"{what} must be comma-separated integers, got {text!r}") from None
    return _seed_list(vals, what)


def _seed_list(vals: list[Any], what: str) -> list[int]:
    """``vals`` checked as seeds (:func:`antigravity.harness.benchmark.validate_seeds`, naming ``what``)."""
    from antigravity.harness.benchmark import validate_seeds

    return validate_seeds(list(vals), what)


def _weights(text: str) -> list[float]:
    """``--teacher-weight`` values parsed (comma-separated numbers); checked with the modes by
    :func:`antigravity.harness.benchmark.check_benchmark_settings`."""
    items = _items(text, "--teacher-weight")
    try:
        return [float(w) for w in items]
    except ValueError:
        raise ConfigurationError(f"--teacher-weight must be comma-separated numbers, got {text!r}") from None


def _benchmark_inputs(settings, task: Optional[str], data_dir: Optional[List[Path]], suite: Optional[str], split: Optional[str],
                      seeds: Optional[str]) -> tuple[Optional[str], list[str], str, list[int]]:
    """``(task, folders, split, seeds)`` of a benchmark: each flag, else the ``[benchmark]``
    settings (config file, environment). The corpora come from the flags when any of
    ``--task``/``--data-dir``/``--suite`` is given, else from ``benchmark.task`` /
    ``benchmark.data_dir`` when set, else the SciFact task."""
    from antigravity.harness.benchmark import check_corpus_choice, resolve_data_dirs

    b = settings.benchmark
    dirs = resolve_data_dirs([str(d) for d in data_dir or []], suite)
    if task is None and not dirs:
        set_task, set_dir = "task" in b.model_fields_set, b.data_dir is not None
        if set_task and set_dir:
            raise ConfigurationError(f"benchmark.task = {b.task!r} and benchmark.data_dir = {b.data_dir!r} are both set: set one (a folder is "
                                     "benchmarked under its own name, without the task's checks)")
        if set_dir:
            dirs = [b.data_dir]
        else:
            task = b.task  # 'SciFact' unless set
    if task:
        from antigravity.datasets import get_task

        get_task(task)  # an unknown task (flag or setting) before any work
    check_corpus_choice(task, dirs)
    seed_list = _ints(seeds, "--seeds") if seeds is not None else _seed_list(list(b.seeds), "benchmark.seeds")
    return task, dirs, split if split is not None else b.split, seed_list


def _settings(config: Optional[Path], **overrides: Any):
    from antigravity.settings import Settings

    return Settings.load(config, **overrides)


def _store_settings(config: Optional[Path], data_dir: Optional[Path], collection: Optional[str]):
    """Settings of the commands that work on one collection (``--config``, ``--data-dir``, ``--collection``)."""
    return _settings(config, data_dir=str(data_dir) if data_dir else None, store__collection=collection)


@app.command()
def benchmark(
    task: Optional[str] = typer.Option(None, help="registered task (SciFact), not with --data-dir/--suite; default benchmark.task / benchmark.data_dir if set, else SciFact unless --data-dir or --suite"),
    modes: str = typer.Option("baseline", help="comma-separated modes or 'all' (baseline,offline,hybrid)"),
    student: Optional[str] = typer.Option(None, help="student model name"),
    teacher: Optional[str] = typer.Option(None, help="teacher model name"),
    cycles: Optional[int] = typer.Option(None, help="sedimentation cycles after cycle 0"),
    seeds: Optional[str] = typer.Option(None, help="comma-separated seeds, each once, >= 0 (each varies the split, traffic order and initialisation); default benchmark.seeds ([0])"),
    data_dir: Optional[List[Path]] = typer.Option(None, help="a BEIR directory (corpus.jsonl, queries.jsonl, qrels/); repeat for several corpora"),
    suite: Optional[str] = typer.Option(None, help="a named corpus suite: 'dev' = the development suite (scifact med cacm npl lisa time)"),
    labels: str = typer.Option("none", help="adaptation-side labels: none (label-free gate, as deployed), dev (labelled dev gate), or none,dev"),
    pseudo_queries: int = typer.Option(0, help="label-free pseudo-queries from the corpus added to the traffic"),
    cross_fit: bool = typer.Option(False, "--cross-fit", help="test-only corpora: also run each seed with the halves swapped and score every judged query (docs/protocol.md)"),
    split: Optional[str] = typer.Option(None, help="qrels split to evaluate; default benchmark.split ('test')"),
    output: Optional[Path] = typer.Option(None, help="write the result JSON here (and a PNG plot beside it: not a .png path)"),
    config: ConfigOpt = None,
    cache_dir: Optional[Path] = typer.Option(None, help="models and embedding cache"),
    teacher_weight: Optional[str] = typer.Option(None, help="hybrid teacher weight(s), comma-separated sweep, e.g. 0.3,0.5,0.7"),
    feedback: Optional[str] = typer.Option(None, help="run the relevance-feedback protocol instead (docs/feedback.md): 'train' = TRAIN qrels (or, without a train split, half the judged queries per seed) as judgments; 'clicks' = clicks simulated from them on the frozen top-10 (feedback.propensity: none|position); alpha = feedback.alpha if set, else 1"),
) -> None:
    """Index BEIR corpora into fresh Qdrant stores, adapt as deployed, and score held-out
    queries per mode, cycle, seed and stratum (docs/protocol.md). With ``--feedback train``:
    train on judgments and score frozen / prior / adapted per stratum (docs/feedback.md)."""
    from antigravity.harness.benchmark import ALL_MODES, LABELS, run_benchmark, strip_private

    if feedback is not None:
        given = [flag for flag, on in (("--modes", modes != "baseline"), ("--labels", labels != "none"), ("--cycles", cycles is not None),
                                       ("--pseudo-queries", pseudo_queries != 0), ("--teacher-weight", teacher_weight is not None), ("--cross-fit", cross_fit)) if on]
        if given:
            raise ConfigurationError(f"--feedback runs the feedback protocol only: remove {', '.join(given)}")
        _feedback_benchmark(feedback, task=task, student=student, teacher=teacher, seeds=seeds, data_dir=data_dir, suite=suite, split=split,
                            output=output, config=config, cache_dir=cache_dir)
        return

    mode_list = list(ALL_MODES) if modes.strip() == "all" else list(dict.fromkeys(m.strip() for m in modes.split(",") if m.strip()))
    bad = [m for m in mode_list if m not in ALL_MODES]
    if bad or not mode_list:
        raise ConfigurationError(f"unknown mode(s) {bad or modes!r}; choose from {', '.join(ALL_MODES)} or 'all'")
    label_list = list(dict.fromkeys(x.strip() for x in labels.split(",") if x.strip()))
    if not label_list or any(x not in LABELS for x in label_list):
        raise ConfigurationError(f"--labels {labels!r}: choose from {', '.join(LABELS)} (comma-separated)")
    if cycles is not None and cycles < 0:
        raise ConfigurationError(f"--cycles must be >= 0, got {cycles}")
    if pseudo_queries < 0:
        raise ConfigurationError(f"--pseudo-queries must be >= 0, got {pseudo_queries}")
    weights = _weights(teacher_weight) if teacher_weight is not None else None
    if output is not None and (not output.name or output.suffix.lower() == ".png"):
        raise ConfigurationError(f"--output {str(output)!r}: give a JSON file path such as run.json (the PNG plot is written beside it as run.png, "
                                 "so the path must not end in .png)")
    settings = _settings(
        config,
        student__name=student,
        teacher__name=teacher,
        cache_dir=str(cache_dir) if cache_dir else None,
        benchmark__cycles=cycles,
    )
    task, dirs, split, seed_list = _benchmark_inputs(settings, task, data_dir, suite, split, seeds)
    from antigravity.harness.benchmark import check_benchmark_settings

    check_benchmark_settings(settings, mode_list, weights)  # before any corpus is read
    result = run_benchmark(
        settings,
        task=task,
        data_dir=dirs,
        split=split,
        modes=mode_list,
        seeds=seed_list,
        cycles=settings.benchmark.cycles,
        teacher_weights=weights,
        labels=label_list,
        pseudo_queries=pseudo_queries,
        cross_fit=cross_fit,
        progress=lambda msg: console.print(f"[dim]{msg}[/dim]"),
    )
    result = strip_private(result)
    _print_table(result)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2))
        from antigravity.harness.benchmark import plot_ndcg

        plot_ndcg(result, output.with_suffix(".png"))
        console.print(f"wrote {output} and {output.with_suffix('.png')}")


def _feedback_benchmark(kind: str, *, task: Optional[str], student: Optional[str], teacher: Optional[str], seeds: Optional[str], data_dir: Optional[List[Path]],
                        suite: Optional[str], split: Optional[str], output: Optional[Path], config: Optional[Path], cache_dir: Optional[Path]) -> None:
    """``benchmark --feedback KIND`` (:func:`antigravity.harness.feedback_benchmark.run_feedback_benchmark`): table, and JSON with ``--output``."""
    from antigravity.harness.benchmark import strip_private
    from antigravity.harness.feedback_benchmark import FEEDBACK_COLUMNS, feedback_table_rows, run_feedback_benchmark, validate_feedback_kind

    validate_feedback_kind(kind)
    settings = _settings(config, student__name=student, teacher__name=teacher, cache_dir=str(cache_dir) if cache_dir else None)
    task, dirs, split, seed_list = _benchmark_inputs(settings, task, data_dir, suite, split, seeds)
    result = strip_private(run_feedback_benchmark(settings, task=task, data_dir=dirs, split=split, seeds=seed_list, feedback=kind,
                                                  progress=lambda msg: console.print(f"[dim]{msg}[/dim]")))
    table = Table(title=(f"feedback {result['feedback']} — student {result['student']} ({result['student_precision']}), alpha {result['alpha']}, "
                         f"recipe {result['recipe']}, prior boost {result['prior_boost']}, seeds {result['seeds']}; mean ± sample std over seeds, "
                         f"Δ vs frozen with paired-t p Holm-corrected over {result['holm_family_size']} tests"))
    for col in FEEDBACK_COLUMNS:
        table.add_column(col, justify="left" if col in ("corpus", "row", "gate") else "right")
    for row in feedback_table_rows(result):
        table.add_row(*row)
    Console(width=220).print(table)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2))
        console.print(f"wrote {output}")


def _print_table(result: dict[str, Any]) -> None:
    from antigravity.harness.benchmark import SUMMARY_COLUMNS, TABLE_COLUMNS, summary_rows, table_rows

    console_out = Console(width=200)
    for lb, run in result["runs"].items():
        for name, corpus in run["corpora"].items():
            p = corpus["protocol_per_seed"][0]
            table = Table(title=(
                f"{name} ({corpus['split']}, {corpus['n_queries_eval']} evaluation queries, {corpus['n_docs']} docs; split {corpus['split_kind']}"
                f"{', cross-fitted' if corpus.get('folds', 1) > 1 else ''}) — labels {lb}; "
                f"student {result['student']}, teacher {result['teacher']}, seeds {result['seeds']}; traffic {p['n_traffic']} + {p['n_pseudo']} pseudo, dev {p['n_dev']}, "
                f"exact duplicates dropped{' per seed and fold' if corpus.get('folds', 1) > 1 else ''} {[q['n_dropped_exact_duplicates'] for q in corpus['protocol_per_seed']]}"
            ))
            for col in TABLE_COLUMNS:
                table.add_column(col, justify="left" if col in ("mode", "stage", "gate") else "right")
            for row in table_rows(corpus):
                table.add_row(*row)
            console_out.print(table)
        if len(run["corpora"]) > 1 or any(m.split("@")[0] != "baseline" or result["cycles"] for m in result["modes"]):
            table = Table(title=f"summary — labels {lb}, stratum {run['summary']['stratum']}, held = within ± {run['summary']['tolerance']}")
            for col in SUMMARY_COLUMNS:
                table.add_column(col)
            for row in summary_rows(run["summary"]):
                table.add_row(*row)
            console_out.print(table)


def _require_persistent(settings, command: str) -> None:
    if not settings.store.url and settings.resolved_store_location == ":memory:":
        raise ConfigurationError(
            f"`antigravity {command}` needs a persistent store, but store.location = ':memory:' "
            "(from ANTIGRAVITY_STORE__LOCATION or the config file): nothing would be kept; unset it or give a folder"
        )


def _open_existing(settings, command: str, **kw: Any):
    """An engine on an existing store: read-only commands never create one."""
    from antigravity.engine import AntigravityEngine
    from antigravity.core.errors import StoreError

    _require_persistent(settings, command)
    engine = AntigravityEngine(settings, create=False, **kw)
    if engine.store.dim is None:
        where = engine.store.describe() if engine.store.remote else engine.store.location
        engine.close()
        raise StoreError(
            f"collection {settings.store.collection!r} does not exist in the store at {where!r} (wrong --data-dir or --collection?); "
            f"create it with `antigravity index CORPUS --data-dir {settings.data_dir}`"
        )
    return engine


@app.command()
def index(
    corpus: Path = typer.Argument(..., help="JSONL corpus: one {'_id','title','text', ...payload} object per line"),
    data_dir: DataDirOpt = None,
    collection: CollectionOpt = None,
    config: ConfigOpt = None,
    reindex: bool = typer.Option(False, "--reindex", help="drop the collection (and move its adapters aside) first: a deliberate re-index, e.g. with another student"),
) -> None:
    """Add a JSONL corpus to the persistent store. The whole file is validated before anything
    is written (the same rules as the Python API, see antigravity.core.documents); a bad record
    stops the command with file:line and id, and nothing of the file is stored."""
    from antigravity.datasets import read_jsonl_documents
    from antigravity.engine import AntigravityEngine

    settings = _store_settings(config, data_dir, collection)
    _require_persistent(settings, "index")
    items = read_jsonl_documents(corpus)
    if not items:
        from antigravity.core.errors import EmptyCorpusError

        raise EmptyCorpusError(f"{corpus}: no documents")
    with AntigravityEngine(settings, reindex=reindex) as engine:
        n = engine.collection.ingest_validated(items, settings.store.upsert_batch_size, show_progress=True)
        engine.indexer.ensure_payload_indexes()
        took = engine.optimize()  # leave an indexed store (HNSW on the served slots)
        empty = sum(1 for it in items if it[3])
        note = f" ({empty} empty: stored, never returned by search)" if empty else ""
        console.print(f"indexed {n} documents{note}; collection {settings.store.collection!r} now holds {engine.count()} (HNSW built in {took:.1f} s)")


@app.command()
def adopt(
    data_dir: DataDirOpt = None,
    collection: CollectionOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Write the manifest of a collection made before manifests existed, for the configured
    student. Only when you know this student built the collection."""
    settings = _store_settings(config, data_dir, collection)
    with _open_existing(settings, "adopt", adopt=True) as engine:
        console.print(f"collection {settings.store.collection!r} ({engine.count()} documents): manifest {engine.manifest.path} records student {engine.encoder.name!r}")


@app.command()
def get(
    doc_ids: List[str] = typer.Argument(..., help="document id(s)"),
    vectors: bool = typer.Option(False, "--vectors", help="also print the raw and served vectors"),
    data_dir: DataDirOpt = None,
    collection: CollectionOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Print stored documents (one JSON line each); exit 2 if any is not stored. Never creates a store."""
    from antigravity.core.errors import DocumentError

    settings = _store_settings(config, data_dir, collection)
    with _open_existing(settings, "get") as engine:
        found = engine.get(list(doc_ids), with_vectors=vectors)
    for d in doc_ids:
        if d in found:
            rec = found[d]
            out = {"doc_id": d, **rec["payload"], "vectors": {k: v.tolist() for k, v in rec["vectors"].items()}} if vectors else {"doc_id": d, **rec}
            print(json.dumps(out, ensure_ascii=False))
    missing = [d for d in doc_ids if d not in found]
    if missing:
        raise DocumentError(f"documents {missing[:10]} are not stored in collection {settings.store.collection!r}")


@app.command()
def delete(
    doc_ids: List[str] = typer.Argument(..., help="document id(s) to delete"),
    data_dir: DataDirOpt = None,
    collection: CollectionOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Delete documents from every served version; exit 2 if none of them was stored."""
    from antigravity.core.errors import DocumentError

    settings = _store_settings(config, data_dir, collection)
    with _open_existing(settings, "delete") as engine:
        n = engine.delete(list(doc_ids))
        left = engine.count()
    if n == 0:
        raise DocumentError(f"none of {list(doc_ids)[:10]} is stored in collection {settings.store.collection!r}; nothing deleted")
    console.print(f"deleted {n} of {len(set(doc_ids))} document(s) from collection {settings.store.collection!r}; {left} left")


@app.command()
def migrate(
    data_dir: DataDirOpt = None,
    collection: CollectionOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Move a collection written by an earlier embedded store to today's Qdrant Edge layout:
    from qdrant-client local mode, or from the single-shard Qdrant Edge layout (all vectors in
    one shard) to one shard per vector. Vectors, payloads, adapters and the active version are
    kept, and the old files are moved aside (not deleted)."""
    from antigravity.serving.integrity import migrate_edge_single_shard, migrate_local_to_edge, single_shard_layout

    settings = _store_settings(config, data_dir, collection)
    _require_persistent(settings, "migrate")
    if single_shard_layout(settings):
        n, backup = migrate_edge_single_shard(settings)
        console.print(f"migrated {n} documents of collection {settings.store.collection!r} to one Qdrant Edge shard per vector; the single-shard files are in {backup}")
        return
    n, backup = migrate_local_to_edge(settings)
    console.print(f"migrated {n} documents of collection {settings.store.collection!r} to Qdrant Edge; the local-mode files are in {backup}")


def _parse_filters(items: list[str]) -> dict[str, Any]:
    """``--filter`` values: ``key=value``, ``key=a,b`` (any of), ``key>=x``, ``key<=x``,
    ``key>x``, ``key<x``; numbers and true/false are typed, a value in quotes (``code="003"``)
    is the string inside them, everything else is a string."""
    from antigravity.core.errors import QueryError

    def typed(v: str) -> Any:
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
            return v[1:-1]
        for cast in (int, float):
            try:
                return cast(v)
            except ValueError:
                pass
        return {"true": True, "false": False}.get(v.lower(), v)

    out: dict[str, Any] = {}
    for item in items:
        for op, key in ((">=", "gte"), ("<=", "lte"), (">", "gt"), ("<", "lt"), ("=", None)):
            if op in item:
                field, value = (x.strip() for x in item.split(op, 1))
                if not field or not value:
                    raise QueryError(f"--filter {item!r}: expected key{op}value")
                if key is None:
                    out[field] = [typed(v) for v in value.split(",")] if "," in value else typed(value)
                else:
                    rng = out.setdefault(field, {})
                    if not isinstance(rng, dict):
                        raise QueryError(f"--filter {item!r}: {field!r} already has an exact value")
                    rng[key] = typed(value)
                break
        else:
            raise QueryError(f"--filter {item!r}: expected key=value, key>=x, key<=x, key>x or key<x")
    return out


@app.command()
def search(
    query: str = typer.Argument(..., help="query text"),
    k: int = typer.Option(10, "-k", help="number of hits"),
    data_dir: DataDirOpt = None,
    collection: CollectionOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    filters: Optional[List[str]] = typer.Option(None, "--filter", help="payload condition, repeatable: key=value, key=a,b (any), key>=x, key<=x"),
) -> None:
    """Search the persistent store (optionally filtered by payload). Never creates a store:
    a missing data folder or collection is an error."""
    settings = _store_settings(config, data_dir, collection)
    flt = _parse_filters(filters) if filters else None
    with _open_existing(settings, "search") as engine:
        hits = engine.search(query, k=k, record=False, filter=flt)
    if as_json:
        for h in hits:
            print(json.dumps({"doc_id": h.doc_id, "score": h.score, "title": h.payload.get("title", "")}))
        return
    table = Table()
    for col in ("rank", "doc_id", "score", "title"):
        table.add_column(col)
    for i, h in enumerate(hits, 1):
        table.add_row(str(i), h.doc_id, f"{h.score:.4f}", str(h.payload.get("title", ""))[:80])
    Console().print(table)


config_app = typer.Typer(help="Show, validate and document settings.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(config: ConfigOpt = None) -> None:
    """Print the effective settings and where each value came from (secrets masked)."""
    from antigravity.settings import explain_sources

    table = Table()
    for col in ("key", "value", "source"):
        table.add_column(col)
    for key, value, source in explain_sources(config):
        table.add_row(key, repr(value), source)
    Console().print(table)


@config_app.command("validate")
def config_validate(file: Path = typer.Argument(..., help="TOML config file to check")) -> None:
    """Check a config file; exit 0 when valid, 2 with the offending field otherwise."""
    from antigravity.settings import Settings

    s = Settings.load(file)
    print(f"{file}: valid (mode={s.mode}, student={s.student.name}, teacher={s.teacher.name})")


@config_app.command("docs")
def config_docs(output: Optional[Path] = typer.Option(None, help="write here instead of stdout")) -> None:
    """Generate the configuration reference (docs/configuration.md) from the Settings model."""
    from antigravity.settings import settings_reference_markdown

    text = settings_reference_markdown()
    if output:
        output.write_text(text + "\n")
    else:
        print(text)


feedback_app = typer.Typer(help="Relevance feedback (clicks, judgments, qrels) kept for training.", no_args_is_help=True)
app.add_typer(feedback_app, name="feedback")


@feedback_app.command("import")
def feedback_import(
    file: Optional[Path] = typer.Argument(None, help="JSONL: one {'query','doc_id','relevance', 'source'?,'rank'?,'at'?} object per line"),
    beir: Optional[Path] = typer.Option(None, "--beir", help="a BEIR directory: import the qrels of --split with their query texts instead of FILE"),
    split: str = typer.Option("train", "--split", help="qrels split read with --beir"),
    source: Optional[str] = typer.Option(None, "--source", help="source of rows that name none (default: judgment for FILE, qrels for --beir)"),
    data_dir: DataDirOpt = None,
    collection: CollectionOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Store relevance feedback for a collection (antigravity.serving.feedback). The whole
    input is validated first, every document id looked up in the collection; a bad line stops
    the command with file:line and nothing is stored."""
    from antigravity.serving.feedback import beir_feedback_rows, read_feedback_jsonl

    if (file is None) == (beir is None):
        raise ConfigurationError("give either a JSONL FILE or --beir DIR (not both)")
    settings = _store_settings(config, data_dir, collection)
    if beir is not None:
        rows, labels = beir_feedback_rows(beir, split, source=source or "qrels")
    else:
        rows, labels = read_feedback_jsonl(file, source=source or "judgment")
    if not rows:
        from antigravity.core.errors import FeedbackError

        raise FeedbackError(f"{beir or file}: no feedback rows")
    with _open_existing(settings, "feedback import") as engine:
        res = engine.feedback_store.add_many(rows, labels=labels)
        total = engine.feedback_store.count()
    console.print(f"stored {res.stored} feedback rows ({res.replaced} replaced an earlier row, {res.dropped} oldest dropped over feedback.max_rows); "
                  f"collection {settings.store.collection!r} now has {total}")


adapters_app = typer.Typer(help="List, inspect and roll back the versioned adapters of a collection.", no_args_is_help=True)
app.add_typer(adapters_app, name="adapters")


def _registry(config: Optional[Path], data_dir: Optional[Path], collection: Optional[str]):
    """Settings and adapter registry for the read-only ``adapters`` commands: they only read
    files, and a missing data folder is an error (never an empty listing)."""
    from antigravity.serving.checkpoints import registry_for
    from antigravity.core.errors import StoreError

    s = _store_settings(config, data_dir, collection)
    root = Path(s.data_dir).expanduser()
    if not root.is_dir():
        raise StoreError(f"data folder {str(root)!r} does not exist (mistyped --data-dir?)")
    reg = registry_for(s)
    if not reg.dir.is_dir():  # every collection the engine made has its folder (manifest, checkpoints)
        there = sorted(p.name for p in reg.dir.parent.iterdir() if p.is_dir()) if reg.dir.parent.is_dir() else []
        raise StoreError(f"no collection {s.store.collection!r} in {str(root)!r} ({str(reg.dir)!r} does not exist; collections there: {there}; mistyped --collection?)")
    return s, reg


@adapters_app.command("list")
def adapters_list(
    data_dir: DataDirOpt = None,
    collection: CollectionOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Every saved adapter version (0 = frozen student); the active one is marked."""
    _, reg = _registry(config, data_dir, collection)
    rows = reg.list()
    if as_json:
        for r in rows:
            print(json.dumps(r, sort_keys=True))
        return
    table = Table(title=f"adapters of collection {reg.collection!r} ({reg.dir})")
    for col in ("", "version", "parent", "source", "mode", "student", "teacher", "created_at", "gate"):
        table.add_column(col)
    for r in rows:
        m = r.get("metrics") or {}
        gate = m.get("gate_candidate")
        teacher = (r.get("teacher") or {}).get("name") if isinstance(r.get("teacher"), dict) else None
        table.add_row(
            "*" if r.get("active") else "",
            str(r["version"]),
            "" if r.get("parent") is None else str(r["parent"]),
            str(r.get("source", r.get("error", ""))),
            str(r.get("mode", "")),
            str((r.get("student") or {}).get("name", "")),
            str(teacher or ""),
            str(r.get("created_at", "")),
            "" if gate is None else f"{gate:.4f}",
        )
    Console().print(table)


@adapters_app.command("show")
def adapters_show(
    version: int = typer.Argument(..., help="adapter version"),
    data_dir: DataDirOpt = None,
    collection: CollectionOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Print one version's metadata (JSON)."""
    _, reg = _registry(config, data_dir, collection)
    meta = reg.read_meta(version)
    meta["active"] = reg.active()["version"] == version
    print(json.dumps(meta, indent=2, sort_keys=True))


@adapters_app.command("rollback")
def adapters_rollback(
    version: Optional[int] = typer.Argument(None, help="version to serve (default: the one before the active one; 0 = frozen student)"),
    data_dir: DataDirOpt = None,
    collection: CollectionOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Serve an earlier version: re-materialises the served vectors and updates active.json.
    Needs the store to itself (stop engines using an embedded store first)."""

    settings = _store_settings(config, data_dir, collection)
    with _open_existing(settings, "adapters rollback") as engine:
        before = engine.served_version.version
        state = engine.rollback(version)
        console.print(f"collection {settings.store.collection!r}: now serving adapter version {state.version} (was {before})")


def main() -> None:
    """Console entry point: typed errors become one line on stderr and exit status 2."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app(standalone_mode=False)
    except AntigravityError as exc:
        if _state["debug"]:
            raise
        from antigravity.settings import mask_url

        print("error: " + mask_url(" ".join(str(exc).split())), file=sys.stderr)  # one line, no credentials
        sys.exit(2)
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, (click.exceptions.Abort, KeyboardInterrupt)):
            sys.exit(130)
        if _state["debug"]:
            raise
        from antigravity.settings import mask_url

        print(f"error: {type(exc).__name__}: " + mask_url(" ".join(str(exc).split())), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
