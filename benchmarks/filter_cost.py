"""What the filter check costs (``DocumentCollection.check_filter``): it needs the payload keys
and the kinds of value under them. Ingest keeps them in the collection manifest
(``payload_fields``), so an engine opened on a folder reads them; a manifest without them (written
before they were kept, or by ``adopt``) makes the first filtered search scan every stored payload
once, O(documents), and write them. Both paths measured per N on a persistent Edge store in a
temporary folder, in one process, against an unfiltered search of the same engine as the
reference:

* ``first_filtered_ms``: the first filtered search after opening the engine, with the map in the
  manifest (``map_in_manifest``) and with it removed (``without_map``: scan + search);
* ``filtered_p50_ms`` / ``unfiltered_p50_ms``: medians of later searches (``--queries`` each);
* ``first_extra_ms``: first filtered − filtered p50 (what opening costs the first filter);
  ``scan_docs_per_s``: N / that, without the map;
* ``qdrant_models_import_s``: importing ``qdrant_client.models`` (the filter parser's), timed
  before anything else because a process pays it once, on its first filter, whatever N;
* ratios first filtered / unfiltered p50 and filtered p50 / unfiltered p50.

    PYTHONPATH=. python benchmarks/filter_cost.py --n 10000 100000 --out results/filter_cost.json

Data: synthetic unit-norm 384-d float32 rows (``benchmarks/scale.py``'s generator, seed 0) and
payloads ``{"lang": one of 3, "year": 2000..2019, "tags": [2 of 8]}``; no encoder is timed
(``search_vectors(record=False)``), no HNSW graph is built (exact search, as below Qdrant's
indexing threshold). The machine may be shared: read the ratios. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scale import StubEncoder, make_data  # noqa: E402

LANGS = ("en", "de", "fr")
TAGS = tuple(f"t{i}" for i in range(8))


def _docs(n: int):
    for i in range(n):
        yield {"_id": f"doc-{i}", "text": f"doc-{i}", "lang": LANGS[i % 3], "year": 2000 + i % 20, "tags": [TAGS[i % 8], TAGS[(i * 3 + 1) % 8]]}


def _p50(fn, queries: np.ndarray, m: int) -> float:
    ms = []
    for j in range(m):
        t0 = time.perf_counter()
        fn(queries[j % len(queries) : j % len(queries) + 1])
        ms.append((time.perf_counter() - t0) * 1000)
    return statistics.median(ms)


def measure(n: int, nq: int, root: str) -> dict:
    """One N: ingest, then the timings of the module doc. Times in ms, rates in docs/s."""
    from antigravity import AntigravityEngine

    docs, queries = make_data("gaussian", 0, n, max(nq, 1))
    kw = dict(data_dir=root, store__collection="filters", store__index_threshold=10**9, store__backend="edge")
    flt = {"lang": "en", "year": {"gte": 2010}}
    out: dict = {"n": n, "queries": nq, "filter": flt}
    t0 = time.perf_counter()
    import qdrant_client.models  # noqa: F401 - the filter parser's first import, timed apart from the scan

    out["qdrant_models_import_s"] = time.perf_counter() - t0
    eng = AntigravityEngine(encoder=StubEncoder(docs, queries), **kw)
    try:
        t0 = time.perf_counter()
        eng.ingest(_docs(n), batch_size=1000)
        out["ingest_s"] = time.perf_counter() - t0
        eng.close()
        for phase in ("map_in_manifest", "without_map"):
            if phase == "without_map":
                path = Path(root) / "adapters"
                manifest = next(path.rglob("manifest.json"))
                m = json.loads(manifest.read_text())
                del m["payload_fields"]
                manifest.write_text(json.dumps(m))
            eng = AntigravityEngine(encoder=StubEncoder(docs, queries), **kw)
            unfiltered = lambda q: eng.search_vectors(q, 10, record=False)  # noqa: E731
            filtered = lambda q: eng.search_vectors(q, 10, record=False, filter=flt)  # noqa: E731
            ref = _p50(unfiltered, queries, nq)  # warms the store; the payload scan is not run by unfiltered searches
            t0 = time.perf_counter()
            hits = filtered(queries[:1])[0]
            first = (time.perf_counter() - t0) * 1000
            if not hits or any(h.payload["lang"] != "en" or h.payload["year"] < 2010 for h in hits):
                raise SystemExit(f"N={n}: the filtered search returned {len(hits)} hits, not 10 matching ones")
            p50 = _p50(filtered, queries, nq)
            out[phase] = {"unfiltered_p50_ms": ref, "first_filtered_ms": first, "filtered_p50_ms": p50,
                          "first_over_unfiltered": first / ref, "filtered_over_unfiltered": p50 / ref,
                          "first_extra_ms": first - p50}
            if phase == "without_map":
                out[phase]["scan_docs_per_s"] = n / max((first - p50) / 1000, 1e-9)
            eng.close()
    finally:
        eng.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    a = ap.parse_args()
    res = []
    for n in a.n:
        with tempfile.TemporaryDirectory() as root:
            res.append(measure(n, a.queries, root))
        print(json.dumps(res[-1]), file=sys.stderr)
    text = json.dumps({"runs": res}, indent=2)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
