"""Encoder precision: ``auto`` follows the CPU's native bf16 support, explicit choices win, the
old ``bf16`` spelling still works (and may not contradict ``precision``), the resolved value is
the student identity's ``dtype``, ``stats()`` and the benchmark JSON report it, and a long
encode shows one progress bar."""

from __future__ import annotations

import contextlib
import zlib
from typing import get_args

import numpy as np
import pytest

import antigravity.encoders.model as model_mod
import antigravity.encoders.precision as precision_mod
from antigravity.core.errors import ConfigurationError
from antigravity.encoders.model import Encoder
from antigravity.encoders.precision import cpuinfo_flags, detect_native_bf16, resolve_precision
from antigravity.engine import AntigravityEngine
from antigravity.settings import PRECISIONS, Precision, Settings, settings_dict
from antigravity.stores.manifest import student_identity
from tests.conftest import HashEncoder

CPUINFO = "processor\t: {i}\nvendor_id\t: GenuineIntel\nflags\t\t: {flags}\nbogomips\t: 5200.00\n\n"
VNNI_ONLY = "fpu sse sse2 avx avx2 avx512f avx512bw avx512_vnni avx_vnni"


@pytest.fixture
def native(monkeypatch):
    """``native(True|False)``: pretend the CPU has (or lacks) native bf16."""

    def set_(value: bool) -> None:
        monkeypatch.setattr(precision_mod, "cpu_has_native_bf16", lambda: value)

    return set_


# -- capability ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "flags,expected",
    [
        (VNNI_ONLY, False),  # the host: VNNI, no bf16
        (VNNI_ONLY + " avx512_bf16", True),
        (VNNI_ONLY + " amx_tile amx_int8 amx_bf16", True),
        ("fpu sse sse2 avx avx2 fma", False),
        ("avx512_bf16_extra not_amx_bf16", False),  # whole flags only
    ],
)
def test_detection_follows_the_cpuinfo_flags(tmp_path, flags, expected):
    f = tmp_path / "cpuinfo"
    f.write_text(CPUINFO.format(i=0, flags=flags) + CPUINFO.format(i=1, flags=flags))
    native, how = detect_native_bf16(f, platform="linux")
    assert native is expected
    assert str(f) in how


def test_cpuinfo_flags_parses_every_flags_line():
    text = CPUINFO.format(i=0, flags="a b") + CPUINFO.format(i=1, flags="b c") + "Features\t: bf16 sve\n"
    assert cpuinfo_flags(text) == {"a", "b", "c"}


def test_detection_without_flags_falls_back_to_torch(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")  # aarch64 style: no flags line
    native, how = detect_native_bf16(f, platform="linux")
    assert isinstance(native, bool) and "torch" in how
    assert detect_native_bf16(tmp_path / "missing", platform="darwin")[1].startswith("torch")


# -- resolution --------------------------------------------------------------------------------
@pytest.mark.parametrize("has_bf16", [True, False])
def test_auto_is_bf16_exactly_when_the_cpu_has_it(native, tmp_path, has_bf16):
    native(has_bf16)
    want = "bf16" if has_bf16 else "fp32"
    assert resolve_precision("auto") == resolve_precision(None) == resolve_precision() == want
    for enc in (Encoder("all-MiniLM-L6-v2", cache_dir=tmp_path), Encoder("all-MiniLM-L6-v2", cache_dir=tmp_path, precision="auto")):
        assert enc.precision == want and enc.bf16 is has_bf16
        assert enc.model_id.endswith("|" + want)


@pytest.mark.parametrize("has_bf16", [True, False])
def test_explicit_choices_win(native, tmp_path, has_bf16):
    native(has_bf16)
    for kwargs, want in [({"precision": "fp32"}, "fp32"), ({"precision": "bf16"}, "bf16"), ({"bf16": False}, "fp32"), ({"bf16": True}, "bf16"),
                         ({"bf16": True, "precision": "bf16"}, "bf16"), ({"bf16": False, "precision": "auto"}, "fp32")]:
        assert resolve_precision(kwargs.get("precision"), bf16=kwargs.get("bf16")) == want, kwargs
        assert Encoder("all-MiniLM-L6-v2", cache_dir=tmp_path, **kwargs).precision == want, kwargs


def test_encoder_refuses_disagreeing_or_unknown_precision(tmp_path):
    with pytest.raises(ConfigurationError, match=r"bf16 = true and precision = 'fp32' disagree"):
        Encoder("all-MiniLM-L6-v2", cache_dir=tmp_path, bf16=True, precision="fp32")
    with pytest.raises(ConfigurationError, match=r"bf16 = false and precision = 'bf16' disagree"):
        resolve_precision("bf16", bf16=False)
    with pytest.raises(ConfigurationError, match="precision = 'fp16': choose from"):
        Encoder("all-MiniLM-L6-v2", cache_dir=tmp_path, precision="fp16")


# -- settings ----------------------------------------------------------------------------------
def test_settings_vocabulary_in_step():
    assert tuple(get_args(Precision)) == PRECISIONS


def test_settings_default_auto_and_old_spelling():
    s = Settings.load()
    assert (s.student.precision, s.student.bf16, s.teacher.precision, s.teacher.bf16) == ("auto", None, "auto", None)
    s = Settings.load(student__bf16=True, teacher__bf16=False)
    assert (s.student.precision, s.student.bf16) == ("bf16", True)  # the old spelling, read as precision
    assert (s.teacher.precision, s.teacher.bf16) == ("fp32", False)
    s = Settings.load(student__precision="fp32", teacher__precision="bf16")
    assert (s.student.bf16, s.teacher.bf16) == (False, True)  # old readers of .bf16 see the same choice
    assert Settings.load(student__precision="bf16", student__bf16=True).student.precision == "bf16"  # agreeing: fine


@pytest.mark.parametrize("section", ["student", "teacher"])
@pytest.mark.parametrize("bf16,precision", [(True, "fp32"), (False, "bf16")])
def test_disagreeing_spellings_are_a_configuration_error(tmp_path, section, bf16, precision):
    msg = rf"{section}: bf16 = {str(bf16).lower()} and precision = '{precision}' disagree"
    with pytest.raises(ConfigurationError, match=msg):
        Settings.load(**{f"{section}__bf16": bf16, f"{section}__precision": precision})
    f = tmp_path / "c.toml"
    f.write_text(f'[{section}]\nbf16 = {str(bf16).lower()}\nprecision = "{precision}"\n')
    with pytest.raises(ConfigurationError, match=msg):
        Settings.load(f)


def test_env_old_spelling_and_bad_values(monkeypatch):
    monkeypatch.setenv("ANTIGRAVITY_STUDENT__BF16", "true")
    assert Settings.load().student.precision == "bf16"
    with pytest.raises(ConfigurationError, match="bf16 = true and precision = 'fp32' disagree"):
        Settings.load(student__precision="fp32")
    monkeypatch.setenv("ANTIGRAVITY_STUDENT__BF16", "maybe")
    with pytest.raises(ConfigurationError, match="student.bf16 = 'maybe'"):
        Settings.load()
    monkeypatch.delenv("ANTIGRAVITY_STUDENT__BF16")
    with pytest.raises(ConfigurationError, match="student.precision = 'fp16'"):
        Settings.load(student__precision="fp16")


def test_round_trip_overrides_and_assignment_keep_one_choice():
    s = Settings.load(student__bf16=True)
    assert Settings.load(**{f"student__{k}": v for k, v in settings_dict(s)["student"].items()}).student.precision == "bf16"
    assert s.replaced(settings_dict(s)).student.precision == "bf16"
    # overriding one spelling replaces the base's other spelling instead of contradicting it
    assert s.with_overrides(student__precision="fp32").student.bf16 is False
    assert s.with_overrides(**{"student.precision": "auto"}).student.bf16 is None
    t = Settings.load(student__precision="fp32").with_overrides(student__bf16=True)
    assert (t.student.precision, t.student.bf16) == ("bf16", True)
    t.student.precision = "fp32"
    assert t.student.bf16 is False
    t.student.bf16 = None
    assert t.student.precision == "auto"


def test_shipped_configs_use_auto():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "config"
    for name in ("default", "production"):
        s = Settings.load(root / f"{name}.toml")
        assert s.student.precision == "auto" and s.teacher.precision == "auto", name


# -- identity, stats, benchmark -------------------------------------------------------------------
@pytest.mark.parametrize("has_bf16", [True, False])
def test_identity_dtype_follows_the_resolved_precision(native, tmp_path, has_bf16):
    native(has_bf16)
    auto = Encoder("all-MiniLM-L6-v2", cache_dir=tmp_path)
    fp32 = Encoder("all-MiniLM-L6-v2", cache_dir=tmp_path, precision="fp32")
    bf16 = Encoder("all-MiniLM-L6-v2", cache_dir=tmp_path, bf16=True)
    assert auto.identity()["dtype"] == student_identity(auto)["dtype"] == ("bf16" if has_bf16 else "fp32")
    assert fp32.identity()["dtype"] == "fp32" and bf16.identity()["dtype"] == "bf16"
    # everything else is the same student: only the dtype tells an fp32 collection from a bf16 one
    assert {k: v for k, v in fp32.identity().items() if k != "dtype"} == {k: v for k, v in bf16.identity().items() if k != "dtype"}


def test_identity_of_custom_encoders():
    class Bf16(HashEncoder):
        precision = "bf16"

    class OldBf16(HashEncoder):
        bf16 = True

    assert student_identity(HashEncoder(16))["dtype"] == "fp32"
    assert student_identity(Bf16(16))["dtype"] == "bf16"
    assert student_identity(OldBf16(16))["dtype"] == "bf16"


def test_stats_reports_the_student_precision(tmp_path):
    class Bf16(HashEncoder):
        precision = "bf16"

    for enc, want in ((HashEncoder(32), "fp32"), (Bf16(32), "bf16")):
        with AntigravityEngine(encoder=enc, store__location=":memory:", data_dir=str(tmp_path), adaptation__rank=8) as e:
            assert e.stats()["student_precision"] == want == e.student_identity["dtype"]


@pytest.mark.parametrize("has_bf16", [True, False])
def test_engine_settings_reach_the_encoder(native, tmp_path, has_bf16):
    """The engine builds its student from settings: auto follows the CPU, explicit values win
    (no model is loaded: the dimension of a registered model is known)."""
    native(has_bf16)
    for overrides, want in (({}, "bf16" if has_bf16 else "fp32"), ({"student__precision": "fp32"}, "fp32"), ({"student__precision": "bf16"}, "bf16"),
                            ({"student__bf16": False}, "fp32"), ({"student__bf16": True}, "bf16")):
        with AntigravityEngine(store__location=":memory:", data_dir=str(tmp_path), **overrides) as e:
            assert e.encoder.precision == want and e.stats()["student_precision"] == want, overrides
            assert not e.encoder.loaded


def test_benchmark_json_records_the_student_precision(tmp_path):
    import json

    from antigravity.harness.benchmark import run_benchmark

    d = tmp_path / "corpus"
    (d / "qrels").mkdir(parents=True)
    words = "fever aspirin cat dog gene tumor heart lung vaccine virus cell protein".split()
    rng = np.random.default_rng(0)
    docs = [(f"d{i}", " ".join(rng.choice(words, size=6))) for i in range(30)]
    (d / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "title": "", "text": t}) + "\n" for i, t in docs))
    (d / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{j}", "text": docs[j][1][:12] + f" w{j}"}) + "\n" for j in range(20)))
    (d / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{j}\td{j}\t1\n" for j in range(20)))
    s = Settings.load(data_dir=str(tmp_path / "state"), adaptation__rank=8, teacher__name="none")

    class Bf16(HashEncoder):
        precision = "bf16"

    r = run_benchmark(s, task=None, data_dir=[str(d)], split="test", modes=["baseline"], seeds=[0], cycles=0, labels=["none"], pseudo_queries=0, encoder=Bf16(32))
    assert r["student_precision"] == "bf16" and r["student"] == "hash-encoder"


# -- one progress bar ------------------------------------------------------------------------------
class _FakeST:
    """Stands in for a loaded SentenceTransformer: records each call."""

    def __init__(self, dim: int = 384) -> None:
        self.dim, self.calls = dim, []

    def vector(self, text: str) -> np.ndarray:
        return np.random.default_rng(zlib.crc32(text.encode())).standard_normal(self.dim).astype(np.float32)

    def encode(self, texts, *, batch_size, show_progress_bar, convert_to_numpy, normalize_embeddings):
        self.calls.append((len(texts), show_progress_bar))
        return np.stack([self.vector(t) for t in texts])

    def get_embedding_dimension(self) -> int:
        return self.dim


@pytest.mark.parametrize("use_cache", [True, False])
def test_a_long_encode_shows_one_progress_bar(tmp_path, monkeypatch, use_cache):
    bars = []

    @contextlib.contextmanager
    def fake_bar(description, total, enabled):
        bar = {"description": description, "total": total, "enabled": enabled, "done": 0}
        bars.append(bar)
        yield (lambda n: bar.__setitem__("done", bar["done"] + n)) if enabled else None

    monkeypatch.setattr(model_mod, "progress_bar", fake_bar)
    enc = Encoder("all-MiniLM-L6-v2", cache_dir=tmp_path, batch_size=32, use_cache=use_cache, precision="fp32")
    enc._model = fake = _FakeST()
    texts = [f"text number {i} " + "word " * (i % 7) for i in range(1300)]  # 3 cache chunks of <= 512
    out = enc.encode(texts, show_progress=True)
    want = np.stack([fake.vector(t) for t in texts])
    np.testing.assert_allclose(out, want / np.linalg.norm(want, axis=1, keepdims=True), rtol=1e-5, atol=1e-6)  # in the caller's order
    assert len(bars) == 1 and bars[0]["total"] == 1300 and bars[0]["done"] == 1300 and "fp32" in bars[0]["description"]
    assert all(show is False for _, show in fake.calls)  # never sentence-transformers' own per-call bar
    assert max(n for n, _ in fake.calls) <= 32  # advanced per batch
    # without show_progress: no bar, one forward call per chunk (or one for all without the cache)
    bars.clear()
    fake.calls.clear()
    enc.encode([t + "!" for t in texts])
    assert [b["enabled"] for b in bars] in ([False], [])
    assert len(fake.calls) == (3 if use_cache else 1)


def test_progress_bar_really_draws_with_rich(tmp_path):
    """The real helper: a rich bar that counts to the total (rendered off-screen)."""
    with model_mod.progress_bar("encode", 5, True) as advance:
        for _ in range(5):
            advance(1)
    with model_mod.progress_bar("encode", 5, False) as advance:
        assert advance is None
