"""The engine as an mteb search model: score the *served* (possibly adapted) engine with mteb.

mteb 2.x evaluates retrieval through its ``SearchProtocol`` (``mteb/models/models_protocols.py``):
``index(corpus, ...)`` once per evaluated split, then ``search(queries, top_k=...)`` returning
``{query_id: {doc_id: score}}``, which mteb scores with pytrec_eval. :class:`AntigravitySearchModel`
implements it on top of :class:`~antigravity.engine.AntigravityEngine`:

* ``index`` ingests the corpus into an engine — a fresh in-memory one by default, or the
  engine you pass (e.g. one whose adapter was adapted on your traffic); the embedded text is
  :func:`antigravity.datasets.doc_text` (``title + " " + text``), exactly as
  ``antigravity benchmark`` and mteb's own encoder path compose it;
* ``search`` answers with the adapter version the engine serves at that moment, with
  ``record=False``: evaluation queries never become adaptation traffic;
* ``mteb_model_meta`` is built locally (no network); its ``revision`` fingerprints the
  student and the served adapter weights, so mteb's result cache never hands back the frozen
  engine's scores for an adapted engine (or the reverse).

:func:`beir_task` turns any local BEIR folder (``corpus.jsonl``, ``queries.jsonl``,
``qrels/<split>.tsv``, optionally gzipped) or a registered task (``task="SciFact"``, the shipped
copy) into an mteb retrieval task, read with :func:`antigravity.datasets.load_beir` (query
``metadata`` is never read)::

    import mteb
    from antigravity.harness.mteb_search import AntigravitySearchModel, beir_task

    model = AntigravitySearchModel(student__name="all-MiniLM-L6-v2")
    result = mteb.evaluate(model, beir_task(task="SciFact"), cache=None)
    print(result.task_results[0].get_score())      # NDCG@10 on the test split

mteb is an optional dependency (``pip install -e ".[dev]"``); it is imported only when needed,
and a missing install raises :class:`ImportError` naming the fix. Nothing else in the package
imports this module.
"""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from antigravity.datasets import doc_text, load_beir, load_task
from antigravity.core.errors import ConfigurationError, QueryError
from antigravity.settings import nest, settings_dict

if TYPE_CHECKING:  # pragma: no cover - typing only
    from antigravity.engine import AntigravityEngine

logger = logging.getLogger(__name__)

#: queries per engine search call (bounds the hit lists held at once when mteb asks for top 1000)
QUERY_CHUNK = 32


def _require_mteb():
    """Import and return ``mteb``; raise :class:`ImportError` with the install hint if absent."""
    try:
        import mteb
    except ImportError as exc:  # pragma: no cover - exercised only without mteb
        raise ImportError(
            "antigravity.harness.mteb_search needs mteb >= 2.0 (an optional dev dependency): "
            "pip install 'mteb>=2.0' or pip install -e '.[dev]'"
        ) from exc
    return mteb


def _fingerprint(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, (bytes, bytearray)):
            h.update(bytes(p))
        else:
            h.update(repr(p).encode())
        h.update(b"\x00")
    return h.hexdigest()[:12]


def _adapter_bytes(adapter: Any) -> bytes:
    """Stable bytes of an adapter's weights (``b"identity"`` for ``None``)."""
    if adapter is None:
        return b"identity"
    buf = io.BytesIO()
    for key, tensor in sorted(adapter.state_dict().items()):
        buf.write(key.encode())
        buf.write(tensor.detach().cpu().contiguous().numpy().tobytes())
    return buf.getvalue()


class AntigravitySearchModel:
    """mteb ``SearchProtocol`` over an :class:`~antigravity.engine.AntigravityEngine`.

    Args:
        engine: an engine to evaluate as it is served now (its adapter version, mode and
            settings). ``index`` upserts the task corpus into it; the engine must then hold
            exactly that corpus (documents of something else would be retrieved too), else
            :class:`~antigravity.core.errors.ConfigurationError`. The caller keeps ownership
            (``close`` does not close it). ``None`` (default): every ``index`` call builds a
            fresh engine with an in-memory Qdrant store, from ``settings`` and ``overrides``;
            it serves the frozen student (adapter version 0).
        settings: :class:`~antigravity.settings.Settings` for the engines built here (ignored
            when ``engine`` is given). ``None``: ``Settings.load(**overrides)``.
        encoder: an encoder object for the engines built here (default: the settings'
            student ``Encoder``, whose on-disk embedding cache makes re-runs cheap).
        ingest_batch_size: documents per ingest batch.
        **overrides: keyword settings overrides (``student__name="all-MiniLM-L6-v2"``...),
            as for ``AntigravityEngine``; the store is always forced to ``":memory:"``.

    Attributes:
        engine: the engine searches go to (``None`` before the first ``index`` when owned).
        skipped_documents: ids of corpus documents with empty title and text, left out of
            the last ``index`` call (the engine refuses to embed an empty document).

    Raises:
        ConfigurationError: ``engine`` together with ``settings``/``encoder``/``overrides``.
    """

    def __init__(
        self,
        engine: "AntigravityEngine | None" = None,
        *,
        settings: Any = None,
        encoder: Any = None,
        ingest_batch_size: int = 512,
        **overrides: Any,
    ) -> None:
        if engine is not None and (settings is not None or encoder is not None or overrides):
            raise ConfigurationError("give either an engine or settings/encoder/overrides for engines built here, not both")
        self._owned = engine is None
        self.engine = engine
        self.ingest_batch_size = int(ingest_batch_size)
        self.skipped_documents: list[str] = []
        self._indexed: int = 0
        if self._owned:
            from antigravity.settings import Settings

            if settings is None:
                base = Settings.load(**overrides)
            elif overrides:
                base = Settings.load(**_deep_merge(_dump(settings), _nest(overrides)))
            else:
                base = settings
            s = base.model_copy(deep=True)
            s.store.location = ":memory:"
            s.store.url = None
            self._settings = s
            if encoder is None:
                from antigravity.encoders.model import Encoder

                st = s.student
                encoder = Encoder(st.name, cache_dir=s.resolved_cache_dir, batch_size=st.batch_size, bf16=st.bf16, max_seq_length=st.max_seq_length)
            self._encoder = encoder
            self._runs = 0

    # -- SearchProtocol -------------------------------------------------------------
    @property
    def mteb_model_meta(self):
        """mteb ``ModelMeta`` built offline: ``name = "antigravity/<student>"``, ``revision =
        "v<served version>-<12 hex digits>"`` (sha256 of the student id, served document and
        query adapter weights and serving-time fusion settings), cosine similarity, the
        student's dimension. An adapted engine therefore never shares mteb cache entries
        with the frozen one."""
        _require_mteb()
        from mteb.models.model_meta import ModelMeta

        enc = self._encoder if self._owned else self.engine.encoder
        student = getattr(enc, "name", type(enc).__name__)
        served = self.engine.served_version if self.engine is not None else None
        version = served.version if served is not None else 0
        settings = self.engine.settings if not self._owned else self._settings
        fusion = (settings.teacher.fusion_weight, settings.teacher.name if settings.teacher.fusion_weight > 0 else None)
        digest = _fingerprint(
            getattr(enc, "model_id", student),
            _adapter_bytes(served.doc_adapter if served else None),
            _adapter_bytes(served.query_adapter if served else None),
            fusion,
        )
        return ModelMeta(
            loader=None,
            name="antigravity/" + str(student).replace("/", "__"),
            revision=f"v{version}-{digest}",
            release_date=None,
            languages=None,
            n_parameters=None,
            memory_usage_mb=None,
            max_tokens=None,
            embed_dim=int(enc.dim),
            license=None,
            open_weights=None,
            public_training_code=None,
            public_training_data=None,
            framework=["PyTorch", "Sentence Transformers"],
            reference=None,
            similarity_fn_name="cosine",
            use_instructions=False,
            training_datasets=None,
            adapted_from=str(student),
            modalities=["text"],
        )

    def index(self, corpus: Any, *, task_metadata: Any = None, hf_split: str | None = None, hf_subset: str | None = None, encode_kwargs: Any = None, num_proc: int | None = None, **kwargs: Any) -> None:
        """Ingest ``corpus`` into the engine.

        Args:
            corpus: an mteb corpus ``datasets.Dataset`` with columns ``id``, ``text`` and
                optionally ``title`` (or any object with ``column_names`` and column
                indexing). Each document is embedded as ``doc_text({"title", "text"})``; title
                and text are kept in the payload. Other arguments are mteb's and unused.

        Raises:
            ConfigurationError: the corpus lacks an ``id``/``text`` column, or a given engine
                holds documents that are not in ``corpus``.
            DocumentError / EmptyCorpusError: from :meth:`AntigravityEngine.ingest`.
        """
        cols = set(getattr(corpus, "column_names", ()) or ())
        if not {"id", "text"} <= cols:
            raise ConfigurationError(f"an mteb corpus needs 'id' and 'text' columns, got {sorted(cols)}")
        ids = [str(i) for i in corpus["id"]]
        texts = corpus["text"]
        titles = corpus["title"] if "title" in cols else [""] * len(ids)
        docs, skipped = [], []
        for did, title, text in zip(ids, titles, texts):
            doc = {"_id": did, "title": title or "", "text": text or ""}
            if doc_text(doc):
                docs.append(doc)
            else:
                skipped.append(did)
        if skipped:
            logger.warning("mteb index: %d documents with empty title and text left out (e.g. %r)", len(skipped), skipped[0])
        self.skipped_documents = skipped
        if self._owned:
            self._new_engine()
        self.engine.ingest(docs, batch_size=self.ingest_batch_size)
        self._indexed = len(docs)
        stored = self.engine.count()
        if stored != len(docs):
            raise ConfigurationError(
                f"the engine holds {stored} documents after indexing this corpus of {len(docs)}: it also holds "
                "documents of something else, which would be retrieved; evaluate an engine holding only this corpus"
            )

    def search(
        self,
        queries: Any,
        *,
        task_metadata: Any = None,
        hf_split: str | None = None,
        hf_subset: str | None = None,
        top_k: int,
        encode_kwargs: Any = None,
        top_ranked: Mapping[str, Sequence[str]] | None = None,
        num_proc: int | None = None,
        **kwargs: Any,
    ) -> dict[str, dict[str, float]]:
        """Top-``top_k`` documents per query from the served engine, ``record=False``.

        Args:
            queries: an mteb query ``datasets.Dataset`` with columns ``id``, ``text`` and
                optionally ``instruction`` (appended as ``text + " " + instruction``, as
                mteb's encoder path does).
            top_k: hits per query (mteb asks for ``max(k_values)``, 1000 for retrieval).
            top_ranked: reranking tasks' candidates ``{qid: [doc_id, ...]}``: each query is
                then ranked over the whole index and only its candidates are kept.

        Returns:
            ``{query_id: {doc_id: cosine score}}`` for every query, in mteb's
            ``RetrievalOutputType``. Query vectors come from the engine encoder's cached
            ``encode`` (the same vectors ``search`` would compute), then
            :meth:`AntigravityEngine.search_vectors` with the texts, so serving-time fusion
            applies when configured.

        Raises:
            ConfigurationError: ``index`` was not called, or no ``id``/``text`` column.
            QueryError: an empty or non-string query (named by id), ``top_k < 1``.
        """
        if self.engine is None or (self._owned and self._indexed == 0):
            raise ConfigurationError("call index(corpus) before search(queries)")
        cols = set(getattr(queries, "column_names", ()) or ())
        if not {"id", "text"} <= cols:
            raise ConfigurationError(f"mteb queries need 'id' and 'text' columns, got {sorted(cols)}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise QueryError(f"top_k must be an integer >= 1, got {top_k!r}")
        qids = [str(q) for q in queries["id"]]
        texts = list(queries["text"])
        if "instruction" in cols:
            texts = [t + " " + i if isinstance(t, str) and i is not None else t for t, i in zip(texts, queries["instruction"])]
        for qid, t in zip(qids, texts):
            if not isinstance(t, str) or not t.strip():
                raise QueryError(f"query {qid!r} has no text (got {t!r}); mteb queries must be non-empty strings")
        k = top_k if top_ranked is None else max(top_k, self.engine.count())
        out: dict[str, dict[str, float]] = {}
        for start in range(0, len(qids), QUERY_CHUNK):
            chunk_ids, chunk_texts = qids[start : start + QUERY_CHUNK], texts[start : start + QUERY_CHUNK]
            raw = self.engine.encoder.encode(chunk_texts)
            hits = self.engine.search_vectors(raw, k=k, record=False, texts=chunk_texts)
            for qid, hs in zip(chunk_ids, hits):
                if top_ranked is not None:
                    allowed = set(top_ranked.get(qid, ()))
                    hs = [h for h in hs if h.doc_id in allowed][:top_k]
                out[qid] = {h.doc_id: float(h.score) for h in hs}
        return out

    # -- lifecycle --------------------------------------------------------------------
    def _new_engine(self) -> None:
        from antigravity.engine import AntigravityEngine

        if self.engine is not None:
            self.engine.store.close()  # keep the encoder loaded for the next engine
        self._runs += 1
        s = self._settings.model_copy(deep=True)
        s.store.collection = f"mteb_{self._runs}"
        self.engine = AntigravityEngine(s, encoder=self._encoder)
        self._indexed = 0

    def close(self) -> None:
        """Close an engine built here (and release its encoder); a given engine is left open."""
        if self._owned and self.engine is not None:
            self.engine.close()
            self.engine = None

    def __enter__(self) -> "AntigravitySearchModel":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _dump(settings: Any) -> dict[str, Any]:
    return settings_dict(settings)


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def _nest(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a__b": v}`` -> ``{"a": {"b": v}}`` (for merging keyword overrides into a dump)."""
    return nest(overrides, drop_none=False)


def beir_task(
    data_dir: str | Path | None = None,
    *,
    task: str | None = None,
    split: str = "test",
    name: str | None = None,
    languages: Sequence[str] = ("eng-Latn",),
):
    """An mteb retrieval task (an ``AbsTaskRetrieval`` instance) over local BEIR files.

    Args:
        data_dir: a BEIR folder: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``
            (each optionally ``.gz``). Read with :func:`antigravity.datasets.load_beir`, so
            query ``metadata`` is never read.
        task: a registered task name instead (``"SciFact"``: ``$ANTIGRAVITY_SCIFACT_DIR`` or
            the shipped, sha256-verified copy); with ``data_dir`` too, that folder is used.
        split: the qrels split evaluated; its judged queries are the task's queries.
        name: the mteb task name (default: the dataset's name). mteb keys its result cache
            by task name, so pass ``cache=None`` to ``mteb.evaluate`` or give distinct names
            to distinct data.
        languages: ISO 639-3 + script codes recorded in the task metadata.

    Returns:
        a task whose ``dataset["default"][split]`` holds ``corpus`` (``id``, ``title``,
        ``text``), ``queries`` (``id``, ``text``), ``relevant_docs`` (the qrels) and
        ``top_ranked = None``; main score ``ndcg_at_10``. Loaded eagerly; the metadata's
        dataset ``revision`` is a sha256 of the loaded contents.

    Raises:
        ConfigurationError: neither ``data_dir`` nor ``task``.
        DatasetError / TaskNotFoundError: from the loaders (missing or malformed files).
        ImportError: mteb is not installed.
    """
    _require_mteb()
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.task_metadata import TaskMetadata

    if task:
        ds = load_task(task, data_dir, splits=(split,))
    elif data_dir:
        ds = load_beir(Path(data_dir), splits=(split,))
    else:
        raise ConfigurationError("give data_dir (a BEIR folder) or task (a registered task name)")
    qrels = ds.qrels[split]
    queries = ds.split_queries(split)
    corpus_rows = [{"id": d, "title": v["title"], "text": v["text"]} for d, v in ds.corpus.items()]
    query_rows = [{"id": q, "text": t} for q, t in queries.items()]
    revision = _fingerprint(
        [(r["id"], r["title"], r["text"]) for r in corpus_rows],
        [(r["id"], r["text"]) for r in query_rows],
        sorted((q, sorted(d.items())) for q, d in qrels.items()),
    )
    task_name = name or ds.name or "LocalBEIR"
    source = f"local BEIR folder {data_dir}" if data_dir else f"antigravity task {task}"

    class LocalBeirRetrieval(AbsTaskRetrieval):
        metadata = TaskMetadata(
            name=task_name,
            dataset={"path": f"antigravity-local/{task_name}", "revision": revision},
            description=f"{task_name} ({source}, split {split!r}), loaded by antigravity.harness.mteb_search.beir_task.",
            type="Retrieval",
            category="t2t",
            modalities=["text"],
            eval_splits=[split],
            eval_langs=list(languages),
            main_score="ndcg_at_10",
        )

        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:  # noqa: D102 - mteb hook
            if self.data_loaded:
                return
            self.dataset = {
                "default": {
                    split: {
                        "corpus": Dataset.from_list(corpus_rows),
                        "queries": Dataset.from_list(query_rows),
                        "relevant_docs": {q: dict(d) for q, d in qrels.items()},
                        "top_ranked": None,
                    }
                }
            }
            self.data_loaded = True

    LocalBeirRetrieval.__name__ = LocalBeirRetrieval.__qualname__ = f"LocalBeirRetrieval_{task_name}"
    t = LocalBeirRetrieval()
    t.load_data()
    return t


def ndcg_at_10(result: Any, split: str = "test") -> float:
    """NDCG@10 of the first task in an ``mteb.evaluate`` result (``ModelResult``), subset
    ``default``. Raises :class:`KeyError` if the split was not evaluated."""
    scores = result.task_results[0].scores[split][0]
    return float(scores["ndcg_at_10"])


__all__ = ["AntigravitySearchModel", "beir_task", "ndcg_at_10", "QUERY_CHUNK"]
