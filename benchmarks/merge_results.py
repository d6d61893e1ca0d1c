"""Merge benchmark result JSONs of one configuration run corpus by corpus (e.g. one process
per corpus) into one result: corpora side by side per label setting, Holm correction and the
cross-corpus summary recomputed over the merged run.

    python benchmarks/merge_results.py results/protocol/suite_L3_L6.json results/protocol/parts/*.json
"""

from __future__ import annotations

import json
import sys

from antigravity.harness.benchmark import apply_holm, summarise
from antigravity.settings import differing_settings


def merge(parts: list[dict]) -> dict:
    """Merge results that share student, teacher, seeds, cycles, pseudo-queries, cross-fitting
    and, where recorded (``settings``), every setting's effective value.

    Raises:
        ValueError: the parts were run with different settings.
    """
    keys = ("student", "teacher", "seeds", "cycles", "pseudo_queries")
    first = parts[0]
    for p in parts[1:]:
        diff = [k for k in keys if p.get(k) != first.get(k)] + (["cross_fit"] if bool(p.get("cross_fit")) != bool(first.get("cross_fit")) else [])
        if "settings" in p and "settings" in first and p["settings"] != first["settings"]:
            diff.append(f"settings ({differing_settings(first['settings'], p['settings'])})")
        if diff:
            raise ValueError(f"cannot merge results that differ in {diff}")
    out = {k: v for k, v in first.items() if k != "runs"}
    recorded = [p["settings"] for p in parts if "settings" in p]  # results before it was recorded have none
    if recorded:
        out["settings"] = recorded[0]
    out["modes"] = list(dict.fromkeys(m for p in parts for m in p["modes"]))
    out["runs"] = {}
    for p in parts:
        for lb, run in p["runs"].items():
            out["runs"].setdefault(lb, {"corpora": {}})["corpora"].update(run["corpora"])
    for run in out["runs"].values():
        apply_holm(run["corpora"])
        run["summary"] = summarise(run["corpora"])
    return out


if __name__ == "__main__":
    merged = merge([json.load(open(f)) for f in sys.argv[2:]])
    with open(sys.argv[1], "w") as fh:
        json.dump(merged, fh, indent=2)
    print(f"wrote {sys.argv[1]} ({sum(len(r['corpora']) for r in merged['runs'].values())} corpus runs)")
