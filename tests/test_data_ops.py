"""Data operations a search backend needs after indexing: delete, get (with vectors) and
payload-filtered search — on the engine, through restarts and from the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from antigravity import AntigravityEngine
from antigravity.adaptation.adapter import ResidualAdapter
from antigravity.core.errors import DocumentError, ManifestError, QueryError
from tests.conftest import HashEncoder

WORDS = "fever aspirin pain cat dog gene tumor virus vaccine heart lung brain".split()


def _docs(n: int = 60) -> list[dict]:
    rng = np.random.default_rng(0)
    return [
        {"_id": f"d{i}", "title": f"doc {i}", "text": " ".join(rng.choice(WORDS, 6)), "year": 2000 + i % 10,
         "lang": ["en", "de", "fr"][i % 3], "score": float(i) / 10}
        for i in range(n)
    ]


def _engine(tmp_path, **kw) -> AntigravityEngine:
    return AntigravityEngine(data_dir=str(tmp_path), encoder=HashEncoder(32), adaptation__rank=8, **kw)


def _adapter(dim: int, seed: int) -> ResidualAdapter:
    import torch

    torch.manual_seed(seed)
    a = ResidualAdapter(dim, 8)
    with torch.no_grad():
        for p in a.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return a


@pytest.fixture(params=["edge", "local"])
def eng(tmp_path, request):
    e = _engine(tmp_path, store__location=":memory:", store__backend=request.param)
    e.ingest(_docs())
    yield e
    e.close()


def test_delete_removes_from_every_version_and_counts(eng):
    a1, a2 = _adapter(32, 1), _adapter(32, 2)
    eng.activate(a1, None, version=1)
    eng.activate(a2, None, version=2)  # both served slots now hold documents
    gone = ["d1", "d2", "d3", "no-such-id"]
    assert eng.delete(gone) == 3
    assert eng.count() == 57 and eng.get("d1") is None and eng.get(["d1", "d4"]) .keys() == {"d4"}
    for version in (2, 1, 0):  # the served version and each earlier one: never returned
        eng.rollback(version)
        hits = eng.search_batch(WORDS, k=60, record=False)
        assert all(h.doc_id not in gone for hs in hits for h in hs)
        assert all(len(hs) == 57 for hs in hits)
    assert eng.stats()["documents_deleted"] == 3
    assert eng.delete(["d1"]) == 0  # already gone: nothing, no error


@pytest.mark.parametrize("bad", ["d1", 7, [None], [""], ["d1", {"x": 1}], None])
def test_bad_delete_changes_nothing(eng, bad):
    with pytest.raises(DocumentError):
        eng.delete(bad)
    assert eng.count() == 60 and eng.get("d1") is not None


@pytest.mark.parametrize("bad", [b"\x05\x06", bytearray(b"\x05\x06"), memoryview(b"\x05\x06"), {5: "x", 6: "y"}])
def test_bytes_or_a_mapping_is_never_read_as_a_list_of_ids(tmp_path, bad):
    # b"\x05\x06" iterates as 5, 6: valid integer ids that must not be deleted or returned
    with _engine(tmp_path, store__location=":memory:") as e:
        e.ingest([{"_id": i, "text": f"doc {WORDS[i % len(WORDS)]}"} for i in range(10)])
        for op in (e.delete, e.get):
            with pytest.raises(DocumentError, match=type(bad).__name__):
                op(bad)
        assert e.count() == 10 and set(e.get([5, 6])) == {"5", "6"}


def test_get_many_with_vectors(eng):
    a = _adapter(32, 3)
    eng.activate(a, None, version=1)
    recs = eng.get(["d5", "d6", "missing"], with_vectors=True)
    assert set(recs) == {"d5", "d6"}
    rec = recs["d5"]
    assert rec["payload"]["title"] == "doc 5" and rec["payload"]["year"] == 2005
    raw, served = rec["vectors"]["raw"], rec["vectors"]["served"]
    assert raw.shape == (32,) and raw.dtype == np.float32
    np.testing.assert_allclose(served, a.transform(raw[None])[0], atol=1e-5)
    np.testing.assert_allclose(raw, eng.encode_queries(["doc 5 " + eng.get("d5")["text"]])[0], atol=1e-5)
    assert eng.get("d5") == rec["payload"]


def test_slots_hold_vectors_only_for_doc_adapters(eng):
    """An identity version is served from ``raw``: no slot copy of raw is stored (it would never
    be read, and would triple the vectors and graphs of a store that never promoted). After a
    doc-side promotion the served slot holds every document, and a document ingested then gets
    the served slot's vector and none in the idle (identity) slot."""
    from antigravity.stores.qdrant import RAW, SLOTS

    store = eng.store
    at_v0 = store.retrieve(["d1", "d2"], with_vectors=[RAW, *SLOTS])
    assert all(set(r["vectors"]) == {RAW} for r in at_v0.values())
    assert eng.search("doc 1", k=3)  # version 0 serves raw
    a = _adapter(32, 5)
    eng.activate(a, None, version=1)
    slot = eng.served_version.slot
    idle = next(s for s in SLOTS if s != slot)
    eng.ingest([{"_id": "new", "title": "fresh", "text": "a new document"}])
    recs = store.retrieve(["d1", "new"], with_vectors=[RAW, *SLOTS])
    for rec in recs.values():
        assert set(rec["vectors"]) == {RAW, slot}
        np.testing.assert_allclose(rec["vectors"][slot], a.transform(rec["vectors"][RAW][None])[0], atol=1e-5)
    assert idle not in recs["new"]["vectors"]
    assert eng.search("a new document", k=1)[0].doc_id == "new"


FILTERS = [
    ({"lang": "de"}, lambda d: d["lang"] == "de"),
    ({"lang": ["en", "fr"]}, lambda d: d["lang"] in ("en", "fr")),
    ({"year": {"gte": 2003, "lte": 2005}}, lambda d: 2003 <= d["year"] <= 2005),
    ({"year": 2004, "lang": "de"}, lambda d: d["year"] == 2004 and d["lang"] == "de"),
    ({"score": {"gt": 2.0, "lt": 3.5}}, lambda d: 2.0 < d["score"] < 3.5),
]


@pytest.mark.parametrize("flt,keep", FILTERS)
def test_filtered_search_equals_filtering_the_exact_ranking(eng, flt, keep):
    allowed = {d["_id"] for d in _docs() if keep(d)}
    full = eng.search("fever aspirin virus", k=60, record=False)
    expected = [h.doc_id for h in full if h.doc_id in allowed][:10]
    got = eng.search("fever aspirin virus", k=10, record=False, filter=flt)
    assert [h.doc_id for h in got] == expected and expected


def test_filtered_search_accepts_qdrant_filter_model(eng):
    from qdrant_client import models

    flt = models.Filter(must=[models.FieldCondition(key="lang", match=models.MatchValue(value="fr"))])
    got = eng.search("gene tumor", k=5, record=False, filter=flt)
    assert got and all(eng.get(h.doc_id)["lang"] == "fr" for h in got)


@pytest.mark.parametrize("bad", [{"lang": []}, {"year": {"about": 3}}, {"": 1}, {"lang": {"x": [1]}}, "lang=de", {"year": [[1]]}])
def test_bad_filter_is_a_query_error(eng, bad):
    before = eng.stats()
    with pytest.raises(QueryError):
        eng.search("fever", k=5, filter=bad)
    assert eng.stats()["traffic_buffered"] == before["traffic_buffered"]


@pytest.mark.parametrize("flt,match", [
    ({"lnag": "en"}, r"filter key 'lnag' is in no stored document; did you mean 'lang'\?"),
    ({"colour": "red"}, r"filter key 'colour' is in no stored document; stored keys: \[.*'lang'"),
    ({"year": "2005"}, r"filter\['year'\]: '2005' is str, but 'year' holds \['int'\] values"),
    ({"lang": 7}, r"filter\['lang'\]: 7 is int, but 'lang' holds \['str'\]"),
    ({"lang": ["en", 1]}, r"1 is int"),
    ({"lang": {"gte": 0}}, r"a range needs numbers, but 'lang' holds \['str'\]"),
])
def test_a_filter_that_can_only_match_nothing_is_refused_not_empty(eng, flt, match):
    with pytest.raises(QueryError, match=match):
        eng.search("fever", k=5, record=False, filter=flt)


def _qf(**clauses):
    from qdrant_client import models

    def cond(spec):
        if isinstance(spec, models.Filter):
            return spec
        key, val = spec
        if isinstance(val, dict):
            return models.FieldCondition(key=key, range=models.Range(**val))
        if isinstance(val, list):
            return models.FieldCondition(key=key, match=models.MatchAny(any=val))
        return models.FieldCondition(key=key, match=models.MatchValue(value=val))

    return models.Filter(**{name: [cond(c) for c in conds] for name, conds in clauses.items()})


@pytest.mark.parametrize("clause", ["must", "should"])
@pytest.mark.parametrize("spec,match", [
    (("lnag", "en"), r"filter key 'lnag' is in no stored document; did you mean 'lang'\?"),
    (("year", "2005"), r"filter\['year'\]: '2005' is str, but 'year' holds \['int'\]"),
    (("lang", [1, 2]), r"1 is int"),
    (("lang", {"gte": 0}), r"a range needs numbers, but 'lang' holds \['str'\]"),
])
def test_a_qdrant_filter_that_can_match_nothing_is_refused_at_any_depth(eng, clause, spec, match):
    """In must, or as the only should condition, the condition makes the filter match nothing."""
    with pytest.raises(QueryError, match=match):
        eng.search("fever", k=5, record=False, filter=_qf(**{clause: [spec]}))
    nested = _qf(must=[_qf(**{clause: [spec]})])  # a Filter inside a Filter
    with pytest.raises(QueryError, match=match):
        eng.search("fever", k=5, record=False, filter=nested)


def test_should_is_refused_only_when_every_condition_can_match_nothing_and_must_not_never(eng):
    got = eng.search("fever", k=60, record=False, filter=_qf(should=[("lang", "en"), ("venue", "x")]))  # an optional key no document has yet
    assert got and all(h.payload["lang"] == "en" for h in got)
    with pytest.raises(QueryError, match=r"'venue' is in no stored document.*each of the other 1 should conditions"):
        eng.search("fever", k=5, record=False, filter=_qf(should=[("venue", "x"), ("lnag", "en")]))
    unfiltered = eng.search("fever", k=60, record=False)
    assert len(eng.search("fever", k=60, record=False, filter=_qf(must_not=[("deleted", True)]))) == len(unfiltered)  # a flag no document has yet excludes nothing, as meant


def test_array_paths_and_datetime_ranges_are_checked_as_qdrant_reads_them(tmp_path):
    from qdrant_client import models

    e = _engine(tmp_path, store__location=":memory:", store__backend="local")
    e.ingest([{"_id": f"a{i}", "text": "fever aspirin", "authors": [{"name": f"n{i % 3}"}], "tags": ["x", f"t{i}"], "at": f"2020-01-0{1 + i % 9}T00:00:00Z", "n": i} for i in range(12)])
    fc = models.FieldCondition
    got = e.search("fever", k=20, record=False, filter=models.Filter(must=[fc(key="authors[].name", match=models.MatchValue(value="n1"))]))
    assert sorted(h.doc_id for h in got) == ["a1", "a10", "a4", "a7"]
    assert len(e.search("fever", k=20, record=False, filter=models.Filter(must=[fc(key="tags[]", match=models.MatchValue(value="x"))]))) == 12
    with pytest.raises(QueryError, match=r"'authors.name' is in no stored document; did you mean 'authors\[\].name'\?"):
        e.search("fever", k=20, record=False, filter={"authors.name": "n1"})  # objects in an array need the [] path
    at = fc(key="at", range=models.DatetimeRange(gte="2020-01-05T00:00:00Z"))
    assert len(e.search("fever", k=20, record=False, filter=models.Filter(must=[at]))) == 5
    assert len(e.search("fever", k=20, record=False, filter=models.Filter(must=[fc(key="text", match=models.MatchText(text="aspirin"))]))) == 12
    with pytest.raises(QueryError, match=r"'txt' is in no stored document; did you mean 'text'"):
        e.search("fever", k=20, record=False, filter=models.Filter(must=[fc(key="txt", match=models.MatchText(text="fever"))]))
    with pytest.raises(QueryError, match=r"a text match needs text, but 'n' holds \['int'\]"):
        e.search("fever", k=20, record=False, filter=models.Filter(must=[fc(key="n", match=models.MatchText(text="1"))]))
    with pytest.raises(QueryError, match=r"a datetime range needs RFC 3339 strings, but 'n' holds \['int'\]"):
        e.search("fever", k=20, record=False, filter=models.Filter(must=[fc(key="n", range=models.DatetimeRange(gte="2020-01-05T00:00:00Z"))]))
    e.close()


def test_a_valid_qdrant_filter_still_searches_as_the_dict_form(eng):
    got = eng.search("fever", k=10, record=False, filter=_qf(must=[("year", {"gte": 2005})], must_not=[("lang", "fr")]))
    ref = eng.search("fever", k=10, record=False, filter={"year": {"gte": 2005}, "lang": ["en", "de"]})
    assert got and {h.doc_id: round(h.score, 5) for h in got} == {h.doc_id: round(h.score, 5) for h in ref}  # ties may order differently


def test_filter_fields_follow_ingest_nested_keys_and_ids(eng):
    assert eng.search("fever", k=60, record=False, filter={"year": 2004}) and eng.search("fever", k=3, record=False, filter={"doc_id": "d3"})[0].doc_id == "d3"
    with pytest.raises(QueryError, match="'venue' is in no stored document"):
        eng.search("fever", k=5, record=False, filter={"venue": "x"})
    eng.ingest([{"_id": "new", "text": "fever aspirin", "venue": "sigir", "meta": {"tags": ["a", "b"], "n": 3}}])
    assert [h.doc_id for h in eng.search("fever", k=5, record=False, filter={"venue": "sigir"})] == ["new"]  # a key ingest added
    assert [h.doc_id for h in eng.search("fever", k=5, record=False, filter={"meta.tags": "b"})] == ["new"]  # nested, list elements
    assert [h.doc_id for h in eng.search("fever", k=5, record=False, filter={"meta.n": {"gte": 3}})] == ["new"]
    assert eng.delete(["new"]) == 1
    assert eng.search("fever", k=5, record=False, filter={"venue": "sigir"}) == []  # deleted: the key stays known, nothing matches


def test_filtered_searches_are_not_recorded_as_traffic(eng):
    eng.search("fever", k=5, filter={"lang": "en"})
    eng.search("fever", k=5)
    s = eng.stats()
    assert s["traffic_buffered"] == 1 and s["filtered_searches"] == 1


def test_delete_survives_restart_and_payload_indexes(tmp_path):
    kw = dict(store__location=str(tmp_path / "store"), store__payload_indexes={"year": "integer", "lang": "keyword"})
    e = _engine(tmp_path, **kw)
    e.ingest(_docs())
    e.activate(_adapter(32, 1), None, version=1)
    assert e.delete([f"d{i}" for i in range(10)]) == 10
    ref = [h.doc_id for h in e.search("fever", k=10, record=False, filter={"year": {"gte": 2005}})]
    e.close()
    e = _engine(tmp_path, **kw)
    assert e.count() == 50 and e.get("d0") is None and e.served_version.version == 1
    assert [h.doc_id for h in e.search("fever", k=10, record=False, filter={"year": {"gte": 2005}})] == ref
    e.close()


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-c", "from antigravity.cli import main; main()", *args],
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600)


@pytest.mark.models
def test_cli_delete_get_and_filtered_search(tmp_path):
    data = str(tmp_path / "engine")
    env = {"ANTIGRAVITY_STUDENT__NAME": "paraphrase-MiniLM-L3-v2"}
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(json.dumps(d) for d in _docs(12)) + "\n")
    r = _cli("index", str(corpus), "--data-dir", data, env=env)
    assert r.returncode == 0, r.stderr
    r = _cli("search", "fever", "--data-dir", data, "--filter", "lang=de", "--filter", "year>=2003", "--json", env=env)
    assert r.returncode == 0, r.stderr
    ids = [json.loads(line)["doc_id"] for line in r.stdout.splitlines()]
    assert ids and all(_docs(12)[int(i[1:])]["lang"] == "de" and _docs(12)[int(i[1:])]["year"] >= 2003 for i in ids)
    r = _cli("get", "d1", "d2", "--data-dir", data, env=env)
    assert r.returncode == 0 and [json.loads(x)["doc_id"] for x in r.stdout.splitlines()] == ["d1", "d2"]
    r = _cli("delete", "d1", "nope", "--data-dir", data, env=env)
    assert r.returncode == 0 and "deleted 1 of 2" in r.stderr  # status lines go to stderr (rich console), data to stdout
    r = _cli("get", "d1", "--data-dir", data, env=env)
    assert r.returncode == 2 and "not stored" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _cli("delete", "d1", "--data-dir", data, env=env)
    assert r.returncode == 2 and "nothing deleted" in r.stderr
    r = _cli("search", "fever", "--data-dir", data, "--filter", "lang", env=env)
    assert r.returncode == 2 and "--filter" in r.stderr


def test_local_mode_store_is_refused_then_migrated(tmp_path):
    """A data folder written by the previous embedded store (qdrant-client local mode) is not
    read as empty by the Qdrant Edge default: it is refused with the command that fixes it;
    `antigravity migrate` copies it, and the active version serves the same results."""
    from antigravity.core.errors import ManifestError
    from antigravity.serving.integrity import migrate_local_to_edge
    from antigravity.settings import Settings

    loc = str(tmp_path / "qdrant")
    old = _engine(tmp_path, store__location=loc, store__backend="local")
    old.ingest(_docs())
    old.activate(_adapter(32, 5), _adapter(32, 6), version=1)
    ref = [[(h.doc_id, round(h.score, 5)) for h in hs] for hs in old.search_batch(WORDS, k=10, record=False)]
    old.close()
    with pytest.raises(ManifestError, match="antigravity migrate --data-dir") as exc:
        _engine(tmp_path, store__location=loc)
    assert "\n" not in str(exc.value)
    n, backup = migrate_local_to_edge(Settings.load(data_dir=str(tmp_path), store__location=loc))
    assert n == 60 and backup.exists()
    new = _engine(tmp_path, store__location=loc)
    assert new.stats()["store_backend"] == "edge" and new.count() == 60 and new.served_version.version == 1
    got = [[(h.doc_id, round(h.score, 5)) for h in hs] for hs in new.search_batch(WORDS, k=10, record=False)]
    assert got == ref
    new.close()
    with pytest.raises(Exception, match="already on the edge backend"):
        migrate_local_to_edge(Settings.load(data_dir=str(tmp_path), store__location=loc))


# -- the payload-key map kept in the manifest (no scan on open) ---------------------------------
def _manifest(e):
    return json.loads(e.collection.manifest.path.read_text())


def _no_scan(e, monkeypatch):
    def boom():
        raise AssertionError("the payloads were scanned")

    monkeypatch.setattr(e.store, "iter_payloads", boom)


def test_ingest_keeps_the_payload_keys_in_the_manifest_so_a_reopened_engine_never_scans(tmp_path, monkeypatch):
    e = _engine(tmp_path)
    e.ingest(_docs())
    e.ingest([{"_id": "n1", "text": "fever", "meta": {"venue": "sigir"}}])
    assert _manifest(e)["payload_fields"] == {"lang": ["str"], "meta": ["object"], "meta.venue": ["str"], "score": ["float"], "text": ["str"], "title": ["str"], "year": ["int"]}
    e.close()
    e = _engine(tmp_path)
    _no_scan(e, monkeypatch)
    assert e.search("fever", k=3, record=False, filter={"meta.venue": "sigir"})[0].doc_id == "n1"
    with pytest.raises(QueryError, match="'lnag' is in no stored document"):  # refusing scans once to be sure ...
        monkeypatch.undo()
        e.search("fever", k=3, record=False, filter={"lnag": "en"})
    _no_scan(e, monkeypatch)
    with pytest.raises(QueryError, match="'lnag' is in no stored document"):  # ... and only once per process
        e.search("fever", k=3, record=False, filter={"lnag": "en"})
    e.close()


def test_a_manifest_without_the_key_map_is_scanned_once_and_written(tmp_path, monkeypatch):
    e = _engine(tmp_path)
    e.ingest(_docs())
    m = _manifest(e)
    del m["payload_fields"]  # a manifest written before the map existed
    e.collection.manifest.path.write_text(json.dumps(m))
    e.close()
    e = _engine(tmp_path)
    assert e.search("fever", k=3, record=False, filter={"lang": "de"})  # scans, writes the map
    assert _manifest(e)["payload_fields"]["year"] == ["int"]
    e.close()
    e = _engine(tmp_path)
    _no_scan(e, monkeypatch)
    assert e.search("fever", k=3, record=False, filter={"year": 2003})
    e.close()


def test_a_manifest_map_older_than_the_store_never_refuses_a_stored_key(tmp_path):
    e = _engine(tmp_path)
    e.ingest(_docs())
    m = _manifest(e)
    del m["payload_fields"]["lang"]  # e.g. the store restored from a newer backup than the manifest
    e.collection.manifest.path.write_text(json.dumps(m))
    e.close()
    e = _engine(tmp_path)
    got = e.search("fever", k=5, record=False, filter={"lang": "fr"})
    assert got and all(h.payload["lang"] == "fr" for h in got)
    assert _manifest(e)["payload_fields"]["lang"] == ["str"]  # the scan repaired the map
    e.close()


@pytest.mark.parametrize("bad", [[], {"lang": "str"}, {"lang": ["text"]}, {"lang": [1]}, {"lang": [["str"]]}])
def test_a_damaged_key_map_in_the_manifest_is_named_at_open(tmp_path, bad):
    e = _engine(tmp_path)
    e.ingest(_docs())
    m = _manifest(e)
    m["payload_fields"] = bad
    e.collection.manifest.path.write_text(json.dumps(m))
    e.close()
    with pytest.raises(ManifestError, match="field 'payload_fields' is"):
        _engine(tmp_path)


def _count_scans(e, monkeypatch):
    calls = []
    orig = e.store.iter_payloads

    def counted():
        calls.append(1)
        return orig()

    monkeypatch.setattr(e.store, "iter_payloads", counted)
    return calls


def test_refusals_scan_at_most_once_per_process_and_never_forget_a_stored_key(tmp_path, monkeypatch):
    e = _engine(tmp_path)
    e.ingest(_docs())
    m = _manifest(e)
    del m["payload_fields"]["lang"]  # a manifest older than the store ...
    e.collection.manifest.path.write_text(json.dumps(m))
    e.close()
    e = _engine(tmp_path)

    def cannot_write(data):
        raise OSError("read-only folder")

    monkeypatch.setattr(e.collection.manifest, "write", cannot_write)  # ... that cannot be repaired on disk
    scans = _count_scans(e, monkeypatch)
    assert e.search("fever", k=3, record=False, filter={"lang": "en"})
    for _ in range(3):
        with pytest.raises(QueryError, match="'lnag' is in no stored document"):
            e.search("fever", k=3, record=False, filter={"lnag": "en"})
    assert e.search("fever", k=3, record=False, filter={"lang": "en"})  # the scanned map is kept, not replaced by the stale one
    assert len(scans) == 1
    e.close()


def test_an_in_memory_store_scans_once_however_many_filters_are_refused(eng, monkeypatch):
    scans = _count_scans(eng, monkeypatch)
    for _ in range(3):
        with pytest.raises(QueryError):
            eng.search("fever", k=3, record=False, filter={"lnag": "en"})
    assert eng.search("fever", k=3, record=False, filter={"lang": "en"}) and len(scans) == 1


def test_a_filtered_search_never_waits_for_a_write_in_progress(tmp_path):
    import threading

    e = _engine(tmp_path)
    e.ingest(_docs())
    e.close()
    e = _engine(tmp_path)
    held, release, got = threading.Event(), threading.Event(), []

    def writer():  # what a promotion or an ingest batch does: hold the write lock
        with e.collection.write_lock:
            held.set()
            release.wait(30)

    t = threading.Thread(target=writer)
    t.start()
    held.wait(10)
    try:
        s = threading.Thread(target=lambda: got.append(e.search("fever", k=3, record=False, filter={"lang": "en"})))
        s.start()
        s.join(20)
        assert got and got[0], "the first filtered search waited for the write lock"
    finally:
        release.set()
        t.join()
    e.close()


def test_a_concurrent_ingest_never_erases_keys_from_the_manifest_map(tmp_path, monkeypatch):
    import threading

    e = _engine(tmp_path)
    e.ingest(_docs())
    orig, state = e.store.count, {}

    def count():  # another thread ingests a new key while this ingest updates the manifest
        if "t" not in state:
            state["t"] = threading.Thread(target=lambda: e.ingest([{"_id": "v1", "text": "fever", "venue": "sigir"}]))
            state["t"].start()
            state["t"].join(1.0)
        return orig()

    monkeypatch.setattr(e.store, "count", count)
    e.ingest([{"_id": "x1", "text": "aspirin"}])
    state["t"].join(30)
    assert "venue" in _manifest(e)["payload_fields"]
    e.close()
    e = _engine(tmp_path)
    assert [h.doc_id for h in e.search("fever", k=3, record=False, filter={"venue": "sigir"})] == ["v1"]
    e.close()


def test_refusals_while_ingest_adds_keys_never_crash_nor_lose_a_key(eng):
    import threading

    errors, stop = [], threading.Event()

    def typos():
        while not stop.is_set():
            try:
                eng.search("fever", k=3, record=False, filter={"zzz": 1})
            except QueryError:
                pass
            except Exception as exc:  # noqa: BLE001 - what the test looks for
                errors.append(exc)
                return

    t = threading.Thread(target=typos)
    t.start()
    try:
        for i in range(40):
            eng.ingest([{"_id": f"k{i}", "text": "fever", f"key{i}": i, **{f"k{i}_{j}": j for j in range(200)}}])  # many new keys: a long map to copy
    finally:
        stop.set()
        t.join()
    assert not errors, errors
    assert all(eng.search("fever", k=3, record=False, filter={f"key{i}": i}) for i in range(40))


def test_payload_shapes_qdrant_matches_are_never_refused(tmp_path):
    from qdrant_client import models

    e = _engine(tmp_path, store__location=":memory:", store__backend="local")
    e.ingest([{"_id": "a", "text": "fever", "tags": ("x", "y"), "authors": ({"name": "ann"},), "ll": [[1, 2], [3]], "ints": [5, 6], "dotted.key": "v"}])
    fc = models.FieldCondition
    for flt in ({"tags": "x"}, {"authors[].name": "ann"}, {"ll[]": 3},
                models.Filter(must=[fc(key="ints[0]", match=models.MatchValue(value=5))]),
                models.Filter(must=[fc(key='"dotted.key"', match=models.MatchValue(value="v"))])):
        assert [h.doc_id for h in e.search("fever", k=3, record=False, filter=flt)] == ["a"], flt
    with pytest.raises(QueryError, match=r"""'dotted.key' is in no stored document; did you mean '"dotted.key"'"""):
        e.search("fever", k=3, record=False, filter={"dotted.key": "v"})  # Qdrant reads it as the path dotted -> key: it would match nothing
    with pytest.raises(QueryError, match=r"7 is int, but 'doc_id' holds \['str'\]"):  # ids are stored as strings
        e.search("fever", k=3, record=False, filter={"doc_id": 7})
    with pytest.raises(QueryError, match="an empty any-of list matches nothing"):
        e.search("fever", k=3, record=False, filter=models.Filter(must=[fc(key="ints", match=models.MatchAny(any=[]))]))
    e.close()


def test_nested_and_min_should_conditions_are_judged_like_the_others(tmp_path):
    """A nested condition's inner keys are read under its array (``authors`` + ``name`` =
    ``authors[].name``); a ``min_should`` whose matchable conditions are fewer than its
    ``min_count`` matches nothing. Both search as Qdrant reads them when valid."""
    from qdrant_client import models

    e = _engine(tmp_path, store__location=":memory:", store__backend="local")
    e.ingest([{"_id": f"a{i}", "text": "fever aspirin", "authors": [{"name": f"n{i % 3}", "h": i}], "lang": ["en", "de"][i % 2]} for i in range(12)])
    fc, mv = models.FieldCondition, models.MatchValue

    def nested(inner):
        return models.Filter(must=[models.NestedCondition(nested=models.Nested(key="authors", filter=models.Filter(must=[inner])))])

    assert sorted(h.doc_id for h in e.search("fever", k=20, record=False, filter=nested(fc(key="name", match=mv(value="n1"))))) == ["a1", "a10", "a4", "a7"]
    with pytest.raises(QueryError, match=r"'authors\[\].nmae' is in no stored document; did you mean 'authors\[\].name'\?"):
        e.search("fever", k=20, record=False, filter=nested(fc(key="nmae", match=mv(value="n1"))))
    with pytest.raises(QueryError, match=r"a range needs numbers, but 'authors\[\].name' holds \['str'\]"):
        e.search("fever", k=20, record=False, filter=nested(fc(key="name", range=models.Range(gte=1))))

    def least(n, *conds):
        return models.Filter(min_should=models.MinShould(conditions=list(conds), min_count=n))

    en, n1, typo = fc(key="lang", match=mv(value="en")), fc(key="authors[].name", match=mv(value="n1")), fc(key="lnag", match=mv(value="en"))
    assert sorted(h.doc_id for h in e.search("fever", k=20, record=False, filter=least(2, en, n1, typo))) == ["a10", "a4"]  # one unknown key of three: two can still match
    assert len(e.search("fever", k=20, record=False, filter=least(1, en, typo))) == 6
    with pytest.raises(QueryError, match=r"min_should needs 2 of its 2 conditions, but only 1 can match: filter key 'lnag' is in no stored document"):
        e.search("fever", k=20, record=False, filter=least(2, en, typo))
    with pytest.raises(QueryError, match=r"min_should needs 3 of its 2 conditions, which no document can meet"):
        e.search("fever", k=20, record=False, filter=least(3, en, n1))  # every condition valid, too few of them (was a bare StopIteration)
    e.close()


@pytest.mark.parametrize("scan", ["raw_matrix", "document_fields"])
def test_a_scan_a_delete_overlapped_is_never_cached(eng, monkeypatch, scan):
    """A cycle's scan of the store (raw vectors, or document texts) that started before a
    delete and ended after it is returned once but not cached: the next read sees the
    delete, never a deleted document for as long as no other write comes."""
    import threading
    import time

    store = eng.collection.store
    name = "iter_vectors" if scan == "raw_matrix" else "iter_payloads"
    orig = getattr(store, name)
    started = threading.Event()

    def slow(*a, **k):
        for i, b in enumerate(orig(*a, **k)):
            if i == 0:
                started.set()
                time.sleep(0.3)  # a long scan (a large corpus): the delete lands meanwhile
            yield b

    monkeypatch.setattr(store, name, slow)
    read = (lambda: eng.raw_matrix()) if scan == "raw_matrix" else (lambda: eng.collection.document_fields("d3"))
    t = threading.Thread(target=read)
    t.start()
    assert started.wait(5)
    assert eng.delete(["d3"]) == 1
    t.join()
    monkeypatch.setattr(store, name, orig)
    if scan == "raw_matrix":
        ids, mat = eng.raw_matrix()
        assert "d3" not in ids and len(ids) == len(mat) == 59
    else:
        with pytest.raises(DocumentError, match="unknown document id 'd3'"):
            eng.collection.document_fields("d3")


def test_a_write_that_fails_part_way_never_leaves_a_cache_of_before_it(eng, monkeypatch):
    """A delete the store applied and then reported as failed (a server gone mid-call): the
    caches of raw vectors and texts are dropped all the same, so no deleted document stays in
    what the next cycle reads."""
    from antigravity.core.errors import StoreError

    assert "d3" in eng.raw_matrix()[0] and eng.collection.document_fields("d3")  # both cached
    store = eng.collection.store
    orig = store.delete

    def applied_then_failed(ids):
        orig(ids)
        raise StoreError("connection reset")

    monkeypatch.setattr(store, "delete", applied_then_failed)
    with pytest.raises(StoreError, match="connection reset"):
        eng.delete(["d3"])
    assert "d3" not in eng.raw_matrix()[0]
    with pytest.raises(DocumentError, match="unknown document id 'd3'"):
        eng.collection.document_fields("d3")
