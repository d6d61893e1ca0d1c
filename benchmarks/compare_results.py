"""Does a re-run reproduce a stored benchmark result? Compares two result JSONs of the same
command row by row: every per-seed Δ NDCG@10 of every stratum, row and mode (frozen,
pre-trained, each cycle) and every gate decision (promoted or not), and prints how many
matched, the largest absolute difference, and each mismatch. Exit status 1 on any mismatch
beyond ``--atol`` (default 1e-9), so it can guard the numbers written in docs/. Every value of
the stored (first) result must be in the re-run: rows are paired by name (``pretrained``,
cycle number), a row missing from the re-run is a mismatch, and so is a value that is not a
finite number (a NaN never matches). ``benchmarks/compare_runs.py`` (absolute NDCG@10 and
per-query scores) shares :func:`row_map` and :func:`gap`.

    python benchmarks/compare_results.py results/protocol/deploy/parts/cacm_none_L3_L6.json /tmp/rerun/cacm_none_L3_L6.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from antigravity.settings import differing_settings  # noqa: E402


def named_rows(mode: dict) -> dict[str, dict]:
    """A mode's rows by name, in result order: ``pretrained`` (when it has one), then each cycle (``"0"``, ``"1"``, …)."""
    out = {"pretrained": mode["pretrained"]} if mode.get("pretrained") else {}
    return out | {str(r["cycle"]): r for r in mode["cycles"]}


def row_map(result: dict) -> dict[tuple[str, str, str, str], dict]:
    """Every row of a result, keyed ``(labels, corpus, mode, row name)``."""
    return {(lb, corpus, mode, name): row for lb, run in result["runs"].items() for corpus, res in run["corpora"].items()
            for mode, m in res["modes"].items() for name, row in named_rows(m).items()}


def gap(x, y) -> float:
    """``|x − y|``; ``inf`` when either is missing or not a finite number (a NaN never matches, not even a NaN)."""
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (x, y)):
        return math.inf
    return abs(x - y)


def _signed(x) -> str:
    return f"{x:+.6f}" if isinstance(x, (int, float)) else repr(x)


def compare(a: dict, b: dict, atol: float = 1e-9) -> tuple[int, float, list[str]]:
    """``(values compared, largest |difference|, mismatches)`` between results ``a`` and ``b``."""
    n, worst, bad = 0, 0.0, []
    if bool(a.get("cross_fit")) != bool(b.get("cross_fit")):  # per-seed Δ over one half vs both: not the same quantity
        return n, worst, [f"cross_fit {bool(a.get('cross_fit'))} vs {bool(b.get('cross_fit'))}: results of different protocols"]
    if "settings" in a and "settings" in b and a["settings"] != b["settings"]:
        bad.append(f"settings {differing_settings(a['settings'], b['settings'])}: run under different settings")
    for lb, run in a["runs"].items():
        other = b["runs"].get(lb)
        if other is None:
            bad.append(f"labels {lb}: missing in the second result")
            continue
        for name, corpus in run["corpora"].items():
            oc = other["corpora"].get(name)
            if oc is None:
                bad.append(f"{lb} {name}: missing in the second result")
                continue
            for mode, m in corpus["modes"].items():
                om = oc["modes"].get(mode)
                if om is None:
                    bad.append(f"{lb} {name} {mode}: missing in the second result")
                    continue
                other_rows = named_rows(om)
                for row, ra in named_rows(m).items():
                    rb = other_rows.get(row)
                    if rb is None:  # paired by name: a shorter re-run is never compared short
                        bad.append(f"{lb} {name} {mode} {row}: missing in the second result")
                        continue
                    for st, sa in ra.get("strata", {}).items():
                        sb = rb.get("strata", {}).get(st, {})
                        for sd, x in sa.get("delta_per_seed", {}).items():
                            y = sb.get("delta_per_seed", {}).get(sd)
                            n += 1
                            diff = gap(x, y)
                            worst = max(worst, diff)
                            if not diff <= atol:
                                bad.append(f"{lb} {name} {mode} {row} {st} seed {sd}: {_signed(x)} vs {y}")
                da, db = m.get("decisions", []), om.get("decisions", [])
                n += len(da)
                if [d["promoted"] for d in da] != [d["promoted"] for d in db]:
                    bad.append(f"{lb} {name} {mode}: gate decisions differ")
    return n, worst, bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stored")
    ap.add_argument("rerun")
    ap.add_argument("--atol", type=float, default=1e-9)
    args = ap.parse_args()
    n, worst, bad = compare(json.load(open(args.stored)), json.load(open(args.rerun)), args.atol)
    print(f"{n} values compared (per-seed Δ of every stratum and row, gate decisions); largest |difference| {worst:.2g}; mismatches {len(bad)}")
    for line in bad:
        print("  " + line)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
