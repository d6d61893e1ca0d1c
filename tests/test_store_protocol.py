"""The typed interfaces: :class:`antigravity.stores.VectorStore` and
:class:`antigravity.encoders.EncoderProtocol`. Every implementation (today ``QdrantStore``,
``EdgeStore``, ``Encoder``, ``ModelTeacher`` and the test fakes) must have
every member of its protocol, with the protocol's parameter names."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from antigravity.encoders import Encoder, EncoderProtocol
from antigravity.stores import RAW, SLOTS, QdrantStore, VectorStore
from tests.conftest import HashEncoder


def protocol_members(proto: type) -> set[str]:
    """Public members a protocol declares: annotated attributes, properties and methods."""
    names = set(getattr(proto, "__annotations__", {}))
    names |= {n for n in vars(proto) if not n.startswith("_")}
    return names


def assert_signature_compatible(proto_fn, impl_fn, where: str) -> None:
    """``impl_fn`` accepts every call ``proto_fn`` allows: the protocol's parameters, in order,
    with the same names and kinds (a defaulted protocol parameter stays defaulted); any further
    parameter of the implementation is optional."""
    proto = list(inspect.signature(proto_fn).parameters.values())[1:]  # drop self
    impl = list(inspect.signature(impl_fn).parameters.values())[1:]
    impl_named = {p.name: p for p in impl}
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    for i, p in enumerate(proto):
        q = impl_named.get(p.name)
        assert q is not None, f"{where}: no parameter {p.name!r} (has {[x.name for x in impl]})"
        if p.kind in positional:
            assert i < len(impl) and impl[i].name == p.name, f"{where}: {p.name!r} must be positional parameter {i}"
            assert q.kind in positional, f"{where}: {p.name!r} must be positional"
        if p.default is not inspect.Parameter.empty:
            assert q.default is not inspect.Parameter.empty, f"{where}: {p.name!r} must have a default"
    for q in impl:
        if q.name not in {p.name for p in proto} and q.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            assert q.default is not inspect.Parameter.empty, f"{where}: extra parameter {q.name!r} must be optional"


def assert_implements(obj, proto: type) -> None:
    """``obj`` has every member of ``proto``; its methods have compatible signatures."""
    assert isinstance(obj, proto)
    cls = type(obj)
    for name in sorted(protocol_members(proto)):
        assert hasattr(obj, name), f"{cls.__name__} lacks {proto.__name__}.{name}"
        declared = inspect.getattr_static(proto, name, None)
        if inspect.isfunction(declared):
            impl = inspect.getattr_static(cls, name, None)
            if isinstance(impl, (staticmethod, classmethod)) or not inspect.isfunction(impl):
                impl = getattr(cls, name)
            assert callable(impl), f"{cls.__name__}.{name} must be a method"
            assert_signature_compatible(declared, impl, f"{cls.__name__}.{name}")


# -- VectorStore ----------------------------------------------------------------------------
def test_vector_store_members_are_the_store_surface():
    assert protocol_members(VectorStore) == {
        "collection", "location", "remote", "dim", "n_empty", "permission_warnings", "meta_file", "collection_dir",
        "describe", "ensure_collection", "drop_collection", "upsert", "set_served", "clear_served", "search", "retrieve",
        "iter_payloads", "iter_vectors", "count", "count_empty", "count_vectors", "close",
        "delete", "create_payload_index", "optimize", "indexed_vectors_count",
    }  # fmt: skip


def test_qdrant_store_in_memory_is_a_vector_store():
    s = QdrantStore(":memory:", collection="c")
    try:
        assert_implements(s, VectorStore)
        s.ensure_collection(4)  # and still one with a collection
        assert_implements(s, VectorStore)
    finally:
        s.close()


def test_qdrant_store_on_disk_is_a_vector_store(tmp_path):
    s = QdrantStore(str(tmp_path / "q"), collection="c")
    try:
        assert_implements(s, VectorStore)
        assert s.meta_file is not None and s.collection_dir is not None
    finally:
        s.close()


def test_edge_store_is_a_vector_store(tmp_path):
    pytest.importorskip("qdrant_edge")
    from antigravity.stores import EdgeStore

    for s in (EdgeStore(":memory:", collection="c"), EdgeStore(str(tmp_path / "e"), collection="c")):
        try:
            assert_implements(s, VectorStore)
            s.ensure_collection(4)
            assert_implements(s, VectorStore)
        finally:
            s.close()


def test_constants_shared_by_base_and_qdrant():
    from antigravity.stores import base, qdrant

    assert qdrant.RAW is base.RAW == RAW == "raw"
    assert qdrant.SLOTS is base.SLOTS == SLOTS == ("served_a", "served_b")


def test_a_store_missing_a_member_is_not_a_vector_store():
    class Partial:
        collection, location, remote, dim, n_empty, permission_warnings = "c", None, False, None, 0, []
        meta_file = collection_dir = None

        def search(self, vectors, using, k):
            return []

    assert not isinstance(Partial(), VectorStore)


def test_signature_check_catches_renamed_parameter():
    class Renamed:
        def search(self, queries, using, k):
            return []

    with pytest.raises(AssertionError, match="no parameter 'vectors'"):
        assert_signature_compatible(VectorStore.search, Renamed.search, "Renamed.search")


# -- EncoderProtocol ------------------------------------------------------------------------
def test_encoder_protocol_members():
    assert protocol_members(EncoderProtocol) == {"name", "dim", "encode", "encode_uncached", "release"}


def test_encoder_is_an_encoder_protocol(tmp_path):
    enc = Encoder("all-MiniLM-L6-v2", cache_dir=tmp_path)  # registered: dim known, nothing loaded
    assert_implements(enc, EncoderProtocol)
    assert not enc.loaded and enc.known_dim == 384


def test_model_teacher_is_an_encoder_protocol(tmp_path):
    from antigravity.teacher import ModelTeacher

    assert_implements(ModelTeacher("all-MiniLM-L6-v2", cache_dir=tmp_path), EncoderProtocol)


def test_test_fakes_are_encoder_protocols():
    from tests.test_bad_input import NaNEncoder
    from tests.test_distillation import SpyTeacher
    from tests.test_integrity import Student

    for fake in (HashEncoder(), NaNEncoder(32), SpyTeacher(), Student()):
        assert_implements(fake, EncoderProtocol)


def test_encode_uncached_skips_the_cache(tmp_path):
    enc = Encoder("all-MiniLM-L6-v2", cache_dir=tmp_path)
    batches = []
    enc._forward = lambda t, p: batches.append(list(t)) or np.full((len(t), 384), 384**-0.5, np.float32)  # type: ignore[method-assign]
    out = enc.encode_uncached(["a query", "another"])
    assert out.shape == (2, 384) and out.dtype == np.float32 and batches == [["a query", "another"]]
    assert enc.encode_uncached([]).shape == (0, 384)
    assert not list(tmp_path.rglob("*"))  # no cache file was written
    with pytest.raises(TypeError, match=r"texts\[1\] must be str"):
        enc.encode_uncached(["ok", 3])  # type: ignore[list-item]


def test_engine_encodes_queries_uncached(tmp_path):
    from antigravity import AntigravityEngine

    class Spy(HashEncoder):
        def __init__(self):
            super().__init__(32)
            self.cached, self.uncached = 0, 0

        def encode(self, texts, show_progress=False):
            self.cached += 1
            return super().encode(texts)

        def encode_uncached(self, texts, show_progress=False):
            self.uncached += 1
            return super().encode_uncached(texts)

    enc = Spy()
    e = AntigravityEngine(data_dir=str(tmp_path), store__location=":memory:", encoder=enc)
    try:
        e.ingest([("d1", "fever and aspirin"), ("d2", "cats sleep")])
        before = enc.cached
        uncached_before = enc.uncached
        assert e.search("aspirin", k=1, record=False)[0].doc_id == "d1"
        assert enc.cached == before and enc.uncached > uncached_before
    finally:
        e.close()
