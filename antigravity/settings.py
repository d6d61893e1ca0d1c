"""Typed settings (pydantic-settings), read from, highest priority first:

1. explicit keyword arguments / CLI options,
2. environment variables ``ANTIGRAVITY_<FIELD>``, nested with ``__``
   (``ANTIGRAVITY_MODE=hybrid``, ``ANTIGRAVITY_TEACHER__WEIGHT=0.3``),
3. a TOML config file (``Settings.from_file(path)`` or ``$ANTIGRAVITY_CONFIG``),
4. the defaults below.

Unknown keys and invalid values raise :class:`antigravity.core.errors.ConfigurationError`
naming the field path, the value and what is allowed.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from pathlib import Path
import types
import typing
from typing import Annotated, Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from antigravity.core.documents import RESERVED_PREFIX
from antigravity.core.errors import ConfigurationError

Mode = Literal["baseline", "offline", "hybrid"]
#: encoder precision: ``auto`` = bf16 when the CPU has native bf16 (avx512_bf16 / AMX), else fp32
#: (resolved by :func:`antigravity.encoders.precision.resolve_precision`)
Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
#: modes that use a teacher (``antigravity.modes`` holds the behaviour; a test keeps the two in step)
TEACHER_MODES = frozenset({"offline", "hybrid"})
#: modes that keep the teacher loaded between cycles
KEEP_TEACHER_MODES = frozenset({"hybrid"})

_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s'\"]+)@")
_SECRET_QUERY = re.compile(r"(?P<key>[?&;](?:api[_-]?key|apikey|key|token|access_token|secret|password|passwd|pwd|auth)=)(?P<value>[^&;#\s'\"]+)", re.IGNORECASE)
_SECRET_NAMES = ("api_key", "apikey", "password", "passwd", "secret", "token")


def mask_url(text: Any) -> Any:
    """``text`` with credentials masked wherever a URL appears in it: the user-info part
    (``https://user:pass@host`` → ``https://***@host``) and the values of secret-looking
    query parameters (``?api_key=...`` → ``?api_key=***``). Non-strings are returned unchanged.
    Used for every URL the package prints: errors, logs, ``repr(settings)``, ``config show``."""
    if not isinstance(text, str):
        return text
    text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}***@", text)
    return _SECRET_QUERY.sub(lambda m: f"{m.group('key')}***", text)


def _is_secret_name(name: str) -> bool:
    n = name.lower()
    return any(k in n for k in _SECRET_NAMES) and not n.endswith("_env")


def precision_choice(precision: str | None = None, bf16: bool | None = None) -> str:
    """The precision asked for by the two spellings: ``precision`` (``"auto"``, ``"fp32"``,
    ``"bf16"``; ``None`` = ``"auto"``) and the old ``bf16`` (``True`` = ``"bf16"``, ``False`` =
    ``"fp32"``, ``None`` = not given). ``"auto"`` is returned unresolved (the encoder resolves
    it by CPU capability).

    Raises:
        ValueError: ``precision`` is not one of :data:`PRECISIONS`, or both spellings are
            given and disagree (``bf16 = True`` with ``precision = "fp32"``, or the reverse).
    """
    if precision is None:
        precision = "auto"
    if precision not in PRECISIONS:
        raise ValueError(f"precision = {precision!r}: choose from {', '.join(repr(p) for p in PRECISIONS)}")
    if bf16 is None:
        return precision
    old = "bf16" if bf16 else "fp32"
    if precision != "auto" and precision != old:
        raise ValueError(
            f"bf16 = {str(bool(bf16)).lower()} and precision = {precision!r} disagree "
            f"(bf16 is the old spelling of precision: true = 'bf16', false = 'fp32'); set only precision"
        )
    return old


_BOOL = TypeAdapter(bool)
_BF16_OF = {"auto": None, "bf16": True, "fp32": False}


def _reconcile_precision(data: Any, assigned: str | None) -> Any:
    """Before-validator of a section with ``precision`` and ``bf16``: after it, the two agree
    (``precision`` = the choice, ``bf16`` = ``None``/``True``/``False`` for auto/bf16/fp32), so
    code reading either spelling sees the same choice and a dumped section validates again.
    Assigning one spelling (``validate_assignment``) replaces the other. Values that are not
    valid yet are left for field validation to report."""
    if not isinstance(data, dict) or not ({"precision", "bf16"} & data.keys()):
        return data
    raw_bf16, precision = data.get("bf16"), data.get("precision", "auto")
    try:
        bf16 = None if raw_bf16 is None else _BOOL.validate_python(raw_bf16)
    except ValidationError:
        return data
    if precision not in PRECISIONS:
        return data
    if assigned == "precision":
        bf16 = None
    elif assigned == "bf16":
        precision = "auto"
    choice = precision_choice(precision, bf16)
    return {**data, "precision": choice, "bf16": _BF16_OF[choice]}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def __repr_args__(self):  # repr/str never show credentials embedded in URLs
        for name, value in super().__repr_args__():
            yield name, mask_url(value)


class StudentSettings(_Section):
    """The student encoder that embeds documents and queries."""

    name: str = Field("all-MiniLM-L6-v2", description="registered model name, local folder or hub id")
    batch_size: int = Field(32, ge=1, le=4096, description="texts per forward pass")
    precision: Precision = Field("auto", description="forward-pass precision: auto (bf16 when the CPU has native bf16 — avx512_bf16 or AMX — else fp32), fp32, or bf16 (CPU bfloat16 autocast: ~2x faster with native bf16, several times slower without; embeddings differ by ~1e-3). Part of the student identity: a collection built in one precision is not served in the other")
    bf16: bool | None = Field(None, description="old spelling of precision: true = 'bf16', false = 'fp32' (None: not given); kept equal to precision after validation; giving both and disagreeing is an error")
    max_seq_length: int | None = Field(None, ge=8, le=8192, description="token truncation (None: model default)")

    @model_validator(mode="before")
    @classmethod
    def _precision_spellings(cls, data: Any, info: ValidationInfo) -> Any:
        return _reconcile_precision(data, info.field_name)


def _not_blank_url(v: str | None, fallback: str) -> str | None:
    """A URL setting that is given must name something: ``""`` (e.g. an environment variable
    set but left empty) would otherwise mean "no URL" and silently use ``fallback``."""
    if v is not None and not v.strip():
        raise ValueError(f"URL is empty; leave the setting unset to use {fallback}")
    return v


class TeacherSettings(_Section):
    """The teacher used by offline distillation and hybrid cycles; loaded lazily."""

    name: str | None = Field("all-mpnet-base-v2", description="registered model name or local folder; '' or 'none': no teacher")
    weight: float = Field(1.0, ge=0.0, le=1.0, description="hybrid blend weight w in [0, 1]: a cycle's loss = (1 − w)·homeostatic + w·teacher KL on its traffic; 1.0 (default since 2026-11-22, chosen over 0.5 on the six development collections with no labels on the adaptation side: cycle candidates gained +0.0070 NDCG@10 on average vs +0.0004, and the label-free gate's decisions were right 24/36 vs 17/36 — docs/distillation.md)")
    temperature: float = Field(0.05, gt=0.0, allow_inf_nan=False, description="softmax temperature T of the listwise KL loss")
    batch_size: int = Field(16, ge=1, le=4096)
    precision: Precision = Field("auto", description="local teacher model: auto (bf16 when the CPU has native bf16 — avx512_bf16 or AMX — else fp32), fp32 or bf16 (part of its embedding-cache key)")
    bf16: bool | None = Field(None, description="old spelling of precision: true = 'bf16', false = 'fp32' (None: not given); kept equal to precision after validation; giving both and disagreeing is an error")
    base_url: str | None = Field(None, description="OpenAI-compatible embeddings endpoint (POST {base_url}/embeddings)")
    api_key_env: str = Field("ANTIGRAVITY_TEACHER_API_KEY", description="env var holding the endpoint's API key")
    timeout_s: float = Field(30.0, gt=0.0)
    max_retries: int = Field(3, ge=0, le=20)
    distill_lr_grid: list[Annotated[float, Field(gt=0.0, le=10.0, allow_inf_nan=False)]] = Field(default_factory=list, description="offline distillation: learning rates to try, the best on the dev split kept (empty: 1e-3 only)")
    distill_patience: int = Field(20, ge=1, le=10000, description="offline distillation: stop after this many epochs without a better early-stopping score (dev NDCG@10, or the label-free judge on the stopping half); the best epoch is kept. 20 (was 10): chosen on the six development collections from label-free curves — the judge's gain on the deciding half at the kept epoch, +0.0224 vs +0.0199 (benchmarks/stopping_rules.py)")
    distill_refit: bool = Field(False, description="offline distillation with a labelled dev split: after the gated run, retrain on distillation + dev query texts (no labels) for the dev-chosen epochs (off: it was adopted after reading test scores; see docs/protocol.md)")
    fusion_weight: float = Field(0.0, ge=0.0, le=1.0, description="opt-in serving-time fusion: score = (1-λ)·student + λ·teacher cosine over the student's top fusion_candidates (0: off; costs one teacher query encoding per search)")
    fusion_candidates: int = Field(100, ge=1, le=10000, description="student hits re-scored by the teacher when fusion_weight > 0")
    lexical_fusion: bool = Field(True, description="the teacher's rankings are fused with BM25 over the stored texts (reciprocal-rank fusion, k 60, top 100 of each; Cormack, Clarke & Büttcher, SIGIR 2009) wherever the teacher ranks — offline distillation and hybrid targets (the teacher's scores re-assigned along the fused order) and the label-free judge; no stored text: the teacher alone, counted in stats()['teacher_failures'] as lexical_*. True (was off): on a rule fixed before the runs, L3 <- L6, labels none — five collections cross-fitted: offline +0.0372 vs +0.0240, hybrid +0.0149 vs +0.0123, no row-seed below -0.005 (was 1), decisions 0.700 vs 0.695; SciFact offline +0.0493 vs +0.0586 (docs/distillation.md)")


    @field_validator("base_url")
    @classmethod
    def _base_url_not_blank(cls, v: str | None) -> str | None:
        return _not_blank_url(v, "the local teacher model")

    @field_validator("name")
    @classmethod
    def _none_name(cls, v: str | None) -> str | None:
        return None if v is None or v.strip().lower() in ("", "none", "null") else v

    @model_validator(mode="before")
    @classmethod
    def _precision_spellings(cls, data: Any, info: ValidationInfo) -> Any:
        return _reconcile_precision(data, info.field_name)


class StoreSettings(_Section):
    """Where vectors live: embedded Qdrant (``path`` or ``:memory:``) or a Qdrant server (``url``)."""

    location: str | None = Field(None, description="':memory:' or a folder; None: <data_dir>/qdrant")
    url: str | None = Field(None, description="Qdrant server URL; overrides location")
    api_key: SecretStr | None = Field(None, description="Qdrant server API key")
    collection: str = Field("antigravity", min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$")
    upsert_batch_size: int = Field(256, ge=1, le=10000)
    store_text: bool = Field(True, description="keep title/text in the payload")
    timeout_s: float = Field(30.0, gt=0.0)
    shard_number: int | None = Field(None, ge=1, le=1000, description="Qdrant server/cluster: shards of a new collection (None: server default)")
    replication_factor: int | None = Field(None, ge=1, le=100, description="Qdrant cluster: copies of each shard (None: server default)")
    write_consistency_factor: int | None = Field(None, ge=1, le=100, description="Qdrant cluster: replicas that must ack a write (None: server default)")
    backend: Literal["edge", "local"] = Field("edge", description="embedded store (no url): edge = Qdrant Edge (qdrant-edge-py: HNSW, filters, WAL); local = qdrant-client local mode (the server API's reference emulation; brute force, for < 20k points)")
    payload_indexes: dict[str, Literal["keyword", "integer", "float", "bool"]] = Field(default_factory=dict, description="payload fields indexed for filtered search, e.g. {year = 'integer', lang = 'keyword'}")

    @field_validator("payload_indexes")
    @classmethod
    def _index_fields(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not name.strip() or name.startswith(RESERVED_PREFIX):
                raise ValueError(f"payload index field {name!r} must be a non-empty payload key not starting with {RESERVED_PREFIX!r} (the engine's flags)")
        return v
    index_threshold: int = Field(10000, ge=0, description="documents above which the served slots get an HNSW index (optimize() after bulk ingest or a promotion); below it search is exact")
    m: int = Field(16, ge=2, le=256, description="HNSW graph degree (Qdrant's m)")
    ef_construct: int = Field(100, ge=4, le=4096, description="HNSW build beam (Qdrant's ef_construct)")
    hnsw_ef: Annotated[int, Field(ge=1, le=10000)] | Literal["auto"] = Field("auto", description="HNSW search beam (Qdrant's hnsw_ef). 'auto': the first index build of a shard measures recall@10 against exact search on 100 stored points held out of the graph and keeps the smallest of 256, 512, 1024, 2048 reaching target_recall (256 until measured: auto only raises the beam). Measured: 256 gives recall@10 0.998 on 100k and 0.963 on 1M structured 384-d vectors, 512 gives 0.992 on 1M (benchmarks/scale.py --data lowrank)")
    target_recall: float = Field(0.99, gt=0.0, le=1.0, description="recall@10 against exact search that hnsw_ef = 'auto' aims for")
    on_disk: bool = Field(False, description="vectors in memory-mapped files read on demand instead of loaded into RAM (Qdrant's on_disk; embedded Edge store and new server collections): RAM holds what searches touch, not every vector of every segment (see docs/deployment.md)")

    @field_validator("url")
    @classmethod
    def _url_not_blank(cls, v: str | None) -> str | None:
        return _not_blank_url(v, "an embedded store")


class AdaptationSettings(_Section):
    """The adapter and the sedimentation cycles that train it."""

    signal: str = Field("modality_gap", description="homeostatic signal definition (see antigravity.adaptation.signals)")
    rank: int = Field(32, ge=1, le=4096, description="low-rank dimension r of the residual adapter")
    lr: float | None = Field(None, gt=0.0, le=10.0, description="None: the signal's recipe")
    epochs: int | None = Field(None, ge=1, le=10000, description="None: the signal's recipe")
    batch_size: int | None = Field(None, ge=1, le=100000, description="None: the signal's recipe")
    weight_decay: float = Field(0.0, ge=0.0)
    identity_reg: float | None = Field(None, ge=0.0, description="L2 pull of the adapter toward identity; None: the signal's recipe")
    signal_top_k: int = Field(20, ge=1, le=1000, description="hits recorded per query for signals")
    max_signals: int = Field(50000, ge=1, description="bounded traffic buffer (queries)")
    min_signals: int = Field(100, ge=1, description="signals that trigger an automatic cycle")
    auto_cycle: bool = Field(False, description="run a cycle automatically when min_signals accumulate")
    seed: int = Field(0, ge=0)
    persist: bool = Field(True, description="save promoted adapters (safetensors + JSON) under <data_dir>/adapters/<collection> and restore the active one at start; off for an in-memory store")


class GateSettings(_Section):
    """Quality gate: promote a new adapter only if it does not lose on validation."""

    enabled: bool = True
    tolerance: float = Field(0.0, ge=0.0, le=1.0, description="labelled dev gate: allowed drop of dev NDCG@10")
    judge: Literal["auto", "teacher", "bm25", "proxy"] = Field("auto", description="label-free gate (no dev split): who judges held-out traffic — auto: the teacher in offline/hybrid mode, BM25 otherwise; proxy: the old drift bound (overlap@10 >= 0.7), not a quality estimate")
    holdout_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="label-free gate: share of traffic texts held out of training and judged")
    min_queries: int = Field(20, ge=2, description="label-free gate: fewer judged held-out queries -> reject (cannot estimate)")
    min_gain: float = Field(0.0, ge=0.0, le=1.0, description="label-free gate: required mean gain of judged NDCG@10 over the current version")
    alpha: float = Field(0.2, gt=0.0, le=1.0, description="label-free gate (cycles and offline distillation): one-sided paired t-test level for the judged gain; 0.2 (was 0.05, a convention): chosen on the six development collections with no labels on the adaptation side — decisions matching the sign of the test change 83/126 at 0.05, 94/126 at 0.2 on the recorded decisions, no corpus worse, no more promoted losses (docs/protocol.md)")
    diagnostics: bool = Field(False, description="label-free judge gate: also record, never decide on, the judge's gain per text source (held-out traffic vs corpus pseudo-queries), its risk-sensitive forms (losses weighted 2, 3, 6; judged wins/losses) and what BM25 (beside a teacher judge) and the known-item judge (a pseudo-query's own document) would say, in each decision's metrics; costs one BM25 ranking per decision")
    min_judged_texts: int = Field(350, ge=0, description="label-free judge gate: when fewer held-out traffic texts are judged per decision, top them up with label-free pseudo-queries from the corpus (titles, sentences; seeded; judged only, never trained on) to this many; 350 ≈ the n a one-sided paired t-test at alpha 0.05 needs for power 0.8 against a judged NDCG@10 gain of 0.02 with per-query sd 0.15; 0 = off (judge held-out traffic only)")


class FeedbackSettings(_Section):
    """Relevance feedback (clicks, judgments, qrels) kept in <data_dir>/feedback/<collection>.sqlite (antigravity.serving.feedback)."""

    max_rows: int = Field(1_000_000, ge=1, description="rows kept; beyond it the oldest written rows are dropped (counted in stats()['feedback']['dropped'])")
    gate_alpha: float = Field(0.05, gt=0.0, le=1.0, description="train_on_feedback: one-sided paired t-test level of the feedback gate (held-out judged feedback queries); its own setting since gate.alpha became 0.2 for the label-free judge")
    max_relevance: int = Field(3, ge=1, le=1000, description="highest graded relevance accepted (0 = shown and not relevant, 1..max_relevance = relevant)")
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="train_on_feedback: weight α of the feedback cross-entropy in α·CE(feedback) + (1 − α)·T²·KL(teacher); 1 = feedback alone (no teacher loaded), 0 = teacher alone (feedback ignored)")
    holdout_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="train_on_feedback: share of feedback queries (a stable hash of the query key) never trained on and used to gate the candidate")
    candidates: int = Field(100, ge=1, le=10000, description="train_on_feedback: the student's top-K documents per feedback query, joined with its judged documents, form the listwise candidates")
    prior_boost: float = Field(0.0, ge=0.0, le=1.0, description="feedback prior at serving time (opt-in; 0 = off): added to the cosine of a candidate judged relevant for a similar feedback query (antigravity.serving.feedback_prior)")
    prior_similarity: float = Field(0.8, ge=-1.0, le=1.0, description="feedback prior: minimum cosine between the raw student vectors of the query and a feedback query")
    prior_candidates: int = Field(100, ge=1, le=10000, description="feedback prior: how many of the student's top candidates are re-ranked (a boosted document outside them is not pulled in)")
    propensity: Literal["none", "position"] = Field("none", description="train_on_feedback: none = clicks count as given; position = inverse-propensity weighting of click rows by 1/p_rank, p_rank = rank^-propensity_eta (Joachims et al. 2017, position bias); judgments, qrels and clicks without a rank are not reweighted")
    propensity_eta: float = Field(1.0, gt=0.0, allow_inf_nan=False, description="train_on_feedback: η of the position propensity p_rank = rank^-η (propensity = position)")
    propensity_clip: float = Field(10.0, ge=1.0, description="train_on_feedback: largest inverse-propensity weight of a click (clipping bounds the variance; inf = no clipping)")


class BenchmarkSettings(_Section):
    task: str = Field("SciFact", description="`antigravity benchmark` task when none of --task / --data-dir / --suite is given (setting it together with data_dir is refused)")
    data_dir: str | None = Field(None, description="`antigravity benchmark` BEIR folder when none of --task / --data-dir / --suite is given")
    split: str = Field("test", description="`antigravity benchmark` evaluation split when --split is not given")
    cycles: int = Field(0, ge=0, le=100, description="`antigravity benchmark` sedimentation cycles when --cycles is not given")
    seeds: list[int] = Field(default_factory=lambda: [0], description="`antigravity benchmark` seeds when --seeds is not given (integers >= 0, each once)")
    dev_fraction: float = Field(0.3, gt=0.0, lt=1.0, description="share of TRAIN qrels queries held out for the gate")


class Settings(BaseSettings):
    """All Antigravity settings. ``mode`` and ``teacher.weight`` are the public contract."""

    model_config = SettingsConfigDict(
        env_prefix="ANTIGRAVITY_", env_nested_delimiter="__", extra="forbid", validate_assignment=True
    )

    mode: Mode = Field("baseline", description="adaptation preset: baseline (homeostasis only), offline (teacher pre-training, then cycles), hybrid (teacher-blended cycles)")
    data_dir: str = Field("~/.antigravity", description="engine state: embedded store, cache, adapters")
    cache_dir: str | None = Field(None, description="models and embedding cache (None: <data_dir>/cache)")
    student: StudentSettings = Field(default_factory=StudentSettings)
    teacher: TeacherSettings = Field(default_factory=TeacherSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    adaptation: AdaptationSettings = Field(default_factory=AdaptationSettings)
    gate: GateSettings = Field(default_factory=GateSettings)
    feedback: FeedbackSettings = Field(default_factory=FeedbackSettings)
    benchmark: BenchmarkSettings = Field(default_factory=BenchmarkSettings)

    def __repr_args__(self):  # nested sections mask themselves; top-level strings too
        for name, value in super().__repr_args__():
            yield name, mask_url(value)

    @model_validator(mode="after")
    def _check_combinations(self) -> "Settings":
        if self.uses_teacher and not (self.teacher.name or self.teacher.base_url):
            raise ValueError(f"mode {self.mode!r} needs a teacher: set teacher.name or teacher.base_url")
        return self

    @property
    def uses_teacher(self) -> bool:
        """Whether ``mode`` uses a teacher (offline pre-training or hybrid cycles)."""
        return self.mode in TEACHER_MODES

    @property
    def keeps_teacher(self) -> bool:
        """Whether ``mode`` keeps the teacher loaded between cycles (hybrid)."""
        return self.mode in KEEP_TEACHER_MODES

    def with_overrides(self, **overrides: Any) -> "Settings":
        """A validated copy with ``overrides`` (nested with ``__`` or ``.``) applied on top;
        the copy remembers this one's config file and all overrides (for reloads).

        Raises:
            ConfigurationError: an invalid or unknown value (names it).
        """
        merged = settings_dict(self)
        for key in overrides:  # one precision spelling overridden: the base's other spelling gives way
            parts = key.replace(".", "__").split("__")
            other = {"precision": "bf16", "bf16": "precision"}.get(parts[-1])
            if len(parts) == 2 and other and isinstance(merged.get(parts[0]), dict) and not ({f"{parts[0]}__{other}", f"{parts[0]}.{other}"} & overrides.keys()):
                merged[parts[0]].pop(other, None)
        for key, value in overrides.items():
            node = merged
            parts = key.replace(".", "__").split("__")
            for p in parts[:-1]:
                node = node.setdefault(p, {})
            node[parts[-1]] = value
        new = Settings.load(**merged)
        new._config_file = self._config_file
        new._overrides = {**self._overrides, **overrides}
        return new

    def replaced(self, data: dict[str, Any]) -> "Settings":
        """Settings validated from the full dict ``data``, keeping this one's config file
        and overrides. Raises ConfigurationError (one line per invalid field)."""
        try:
            validated = Settings(**data)
        except ValidationError as exc:
            raise ConfigurationError(format_validation_error(exc)) from None
        validated._config_file = self._config_file
        validated._overrides = self._overrides
        return validated

    @property
    def resolved_cache_dir(self) -> Path:
        return Path(self.cache_dir or Path(self.data_dir) / "cache").expanduser()

    @property
    def resolved_store_location(self) -> str:
        return self.store.location or str(Path(self.data_dir).expanduser() / "qdrant")

    _toml_data: dict[str, Any] = {}
    _config_file: str | None = None  # where load() read the file from (reload_settings re-reads it)
    _overrides: dict[str, Any] = {}  # explicit arguments given to load() (re-applied on reload)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))

    @classmethod
    def load(cls, config_file: str | Path | None = None, **overrides: Any) -> "Settings":
        """Build settings from ``overrides`` > env > ``config_file`` (or ``$ANTIGRAVITY_CONFIG``) > defaults.

        Raises:
            ConfigurationError: unreadable/invalid TOML, unknown key, or invalid value
                (message names the field path, the value and the constraint).
        """
        path = config_file or os.environ.get("ANTIGRAVITY_CONFIG")
        _TomlSource.current = read_toml(path) if path else {}
        try:
            obj = cls(**nest(overrides))
            obj._config_file = str(path) if path else None
            obj._overrides = dict(overrides)
        except ValidationError as exc:
            raise ConfigurationError(format_validation_error(exc, source=str(path) if path else None)) from None
        finally:
            _TomlSource.current = {}
        unknown = unknown_environment(os.environ, obj)
        if unknown:
            many = len(unknown) > 1
            raise ConfigurationError(f"environment variable{'s' if many else ''} {', '.join(unknown)} {'are' if many else 'is'} not a setting "
                                     "(ANTIGRAVITY_<SECTION>__<KEY>, e.g. ANTIGRAVITY_STORE__URL; `antigravity config docs` lists them)")
        return obj


#: ``ANTIGRAVITY_*`` variables that are read directly, not settings: the config file, the
#: benchmark's data roots (antigravity.harness.benchmark, antigravity.datasets)
NON_SETTING_ENV: tuple[str, ...] = ("ANTIGRAVITY_CONFIG", "ANTIGRAVITY_SUITE_ROOT", "ANTIGRAVITY_SCIFACT_DIR")


def unknown_environment(environ: Mapping[str, str], settings: "Settings") -> list[str]:
    """``ANTIGRAVITY_*`` environment variables that name no setting (each with the nearest
    setting variable when there is one), e.g. ``ANTIGRAVITY_STORE_URL`` (one underscore), which
    pydantic-settings would ignore — silently serving another store or mode. Accepted:
    ``ANTIGRAVITY_<FIELD>``, ``ANTIGRAVITY_<SECTION>__<KEY>`` (deeper for dict settings),
    :data:`NON_SETTING_ENV` and the teacher's ``api_key_env``."""
    prefix = "ANTIGRAVITY_"
    valid = {prefix + name.upper() for name in type(settings).model_fields}
    for name in type(settings).model_fields:
        section = getattr(settings, name)
        if isinstance(section, BaseModel):
            valid |= {f"{prefix}{name.upper()}__{key.upper()}" for key in type(section).model_fields}
    allowed = set(NON_SETTING_ENV) | {settings.teacher.api_key_env.upper()}
    out = []
    for var in environ:
        up = var.upper()
        if not up.startswith(prefix) or up in valid or up in allowed:
            continue
        parts = up.split("__")
        if len(parts) > 2 and "__".join(parts[:2]) in valid and isinstance(_setting_value(settings, parts[:2]), dict):
            continue  # a key of a dict setting, e.g. ANTIGRAVITY_STORE__PAYLOAD_INDEXES__YEAR
        near = difflib.get_close_matches(up[len(prefix):], sorted(v[len(prefix):] for v in valid), n=1)  # the shared prefix would make every name look near
        out.append(var + (f" (did you mean {prefix}{near[0]}?)" if near else ""))
    return sorted(out)


def _setting_value(settings: "Settings", parts: list[str]) -> Any:
    section = getattr(settings, parts[0][len("ANTIGRAVITY_"):].lower(), None)
    return getattr(section, parts[1].lower(), None)


class _TomlSource(PydanticBaseSettingsSource):
    current: dict[str, Any] = {}

    def get_field_value(self, field, field_name):  # pragma: no cover - unused by __call__
        return self.current.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.current)


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML config file. Raises :class:`ConfigurationError` naming the file."""
    p = Path(path).expanduser()
    try:
        with open(p, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigurationError(f"config file {str(p)!r} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"config file {str(p)!r} is not valid TOML: {exc}") from None


def settings_dict(settings: "Settings") -> dict[str, Any]:
    """``settings`` as a plain nested dict, secrets unmasked (to rebuild a validated copy)."""
    d = settings.model_dump()
    if settings.store.api_key is not None:
        d["store"]["api_key"] = settings.store.api_key.get_secret_value()
    return d


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def changes(old: "Settings", new: "Settings") -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (old, new)}`` for every value that differs."""
    a, b = flatten(settings_dict(old)), flatten(settings_dict(new))
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def nest(flat: Mapping[str, Any], *, drop_none: bool = True) -> dict[str, Any]:
    """Turn ``{"teacher__weight": 0.3}`` or ``{"teacher.weight": 0.3}`` into nested dicts
    (``None`` values dropped unless ``drop_none=False``)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if value is None and drop_none:
            continue
        parts = key.replace(".", "__").split("__")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def format_validation_error(exc: ValidationError, source: str | None = None) -> str:
    """One line per error: ``field.path = value: what is allowed``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "settings"
        value = err.get("input")
        if any(_is_secret_name(str(p)) for p in err["loc"]):
            value = "**********"
        elif isinstance(value, str):
            value = mask_url(value)
        msg = mask_url(err["msg"])
        if err["type"] == "extra_forbidden":
            msg = "unknown setting"
        if err["type"] == "value_error" and isinstance(value, dict):  # a section-level check: its message names the keys
            lines.append(f"{loc}: {msg.removeprefix('Value error, ')}")
            continue
        lines.append(f"{loc} = {value!r}: {msg}")
    where = f" in {source}" if source else ""
    return f"invalid settings{where}: " + "; ".join(lines)


def settings_reference_markdown() -> str:
    """The configuration reference (``docs/configuration.md``) generated from the models, so
    it cannot drift: one table per section with key, env var, type, default and description."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from `antigravity.settings.Settings` by `antigravity config docs`; a test fails if this file drifts.",
        "",
        "Priority, highest first: explicit arguments / CLI options, environment variables (`ANTIGRAVITY_<KEY>`, nested",
        "with `__`), a TOML file (`--config FILE` or `$ANTIGRAVITY_CONFIG`), defaults. Unknown keys and invalid values",
        "are rejected with the field path, the value and what is allowed.",
        "",
    ]

    def _type_text(ann: Any) -> str:
        """A field's type for the table: ``int [Ge(ge=1), Le(le=10000)] | Literal['auto']`` for a union of an annotated int and a literal."""
        if ann is type(None):
            return "None"
        if typing.get_origin(ann) in (typing.Union, types.UnionType):
            return " | ".join(_type_text(a) for a in typing.get_args(ann))
        if typing.get_origin(ann) is typing.Annotated:
            base, *meta = typing.get_args(ann)
            limits = [str(m) for fi in meta for m in getattr(fi, "metadata", [fi])]
            return f"{_type_text(base)} [{', '.join(limits)}]"
        return str(ann).replace("typing.", "") if "Literal" in str(ann) else (getattr(ann, "__name__", None) or str(ann).replace("typing.", ""))

    def rows(model: type[BaseModel], prefix: str) -> list[str]:
        out = []
        for name, f in model.model_fields.items():
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                continue
            key = f"{prefix}{name}"
            env = "ANTIGRAVITY_" + key.replace(".", "__").upper()
            default = f.get_default(call_default_factory=True)
            typ = _type_text(ann)
            limits = [str(m) for m in f.metadata if type(m).__name__ in ("Ge", "Gt", "Le", "Lt", "MinLen", "MaxLen", "_PydanticGeneralMetadata")]
            desc = (f.description or "") + (f" ({', '.join(limits)})" if limits else "")
            typ = typ.replace("|", "\\|")
            out.append(f"| `{key}` | `{env}` | {typ} | `{default!r}` | {desc} |")
        return out

    header = ["| key | env var | type | default | description |", "| --- | --- | --- | --- | --- |"]
    lines += ["## top level", "", *header, *rows(Settings, ""), ""]
    for name, f in Settings.model_fields.items():
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            lines += [f"## [{name}]", "", (ann.__doc__ or "").strip(), "", *header, *rows(ann, f"{name}."), ""]
    return "\n".join(lines)


def effective_settings(settings: "Settings") -> dict[str, Any]:
    """Every setting's effective value, ``{"section.key": value}`` (secrets and credentials in
    URLs masked; ``data_dir``/``cache_dir`` left out: where, not how). A benchmark result
    records it (``"settings"``), so results run under different settings — an environment
    override, or a default that changed between runs — are told apart by their values."""
    out: dict[str, Any] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, BaseModel):
            for key in type(value).model_fields:
                v = getattr(value, key)
                out[f"{name}.{key}"] = "**********" if isinstance(v, SecretStr) or (_is_secret_name(key) and isinstance(v, str)) else mask_url(v)
        elif name not in ("data_dir", "cache_dir"):
            out[name] = value
    return out


def differing_settings(a: dict[str, Any], b: dict[str, Any]) -> str:
    """The settings two :func:`effective_settings` records disagree on, one line
    (``"teacher.lexical_fusion: True vs False, …"``); ``""`` when they agree. A key only one
    record has counts as differing (``None`` on the other side)."""
    return ", ".join(f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))


def explain_sources(config_file: str | Path | None = None, **overrides: Any) -> list[tuple[str, Any, str]]:
    """``[(key, value, source)]`` of the effective settings; source is ``argument``, ``env``,
    ``file`` or ``default``. Secrets are masked."""
    settings = Settings.load(config_file, **overrides)
    path = config_file or os.environ.get("ANTIGRAVITY_CONFIG")
    file_data = read_toml(path) if path else {}
    nested_over = nest(overrides)
    environ = {k.upper(): v for k, v in os.environ.items()}  # pydantic-settings reads names in any case

    def from_env(key: str) -> bool:
        """Whether the environment sets ``key``: its own variable, or a JSON object in the
        variable of a section above it (``ANTIGRAVITY_TEACHER='{"weight": 0.3}'``)."""
        parts = key.split(".")
        if "ANTIGRAVITY_" + "__".join(parts).upper() in environ:
            return True
        for i in range(1, len(parts)):
            raw = environ.get("ANTIGRAVITY_" + "__".join(parts[:i]).upper())
            try:
                node = json.loads(raw) if raw is not None else None
            except ValueError:
                continue
            for name in parts[i:]:
                node = node.get(name) if isinstance(node, dict) else None
            if node is not None:
                return True
        return False

    out = []

    def walk(model: BaseModel, prefix: str, over: dict, filed: dict) -> None:
        for name in type(model).model_fields:
            value = getattr(model, name)
            key = f"{prefix}{name}"
            if isinstance(value, BaseModel):
                walk(value, key + ".", over.get(name, {}) or {}, filed.get(name, {}) or {})
                continue
            source = "argument" if name in over else "env" if from_env(key) else "file" if name in filed else "default"
            if isinstance(value, SecretStr) or (_is_secret_name(name) and isinstance(value, str)):
                value = "**********"
            else:
                value = mask_url(value)
            out.append((key, value, source))

    walk(settings, "", nested_over, file_data)
    return out
