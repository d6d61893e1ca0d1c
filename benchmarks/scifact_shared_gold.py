"""Do SciFact's adaptation gains come from its train/test pairing? Splits the headline stratum
(test claims without a near-duplicate among the TRAIN claims) into claims whose gold abstracts
some TRAIN claim shares and claims whose gold abstracts no TRAIN claim has, and averages each
decision's per-query test change (``per_query_delta``, recorded by the benchmark) over both.
Evaluation-side only: qrels are read here to score, never by adaptation.

    python benchmarks/scifact_shared_gold.py results/protocol/deploy/parts/scifact_none_L3_L6.json
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

from antigravity.adaptation.gates import near_duplicate_mask

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


def qrels(path: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for row in csv.DictReader(open(path), delimiter="\t"):
        if int(row["score"]) > 0:
            out.setdefault(row["query-id"], set()).add(row["corpus-id"])
    return out


def main() -> None:
    train, test = qrels(DATA / "qrels" / "train.tsv"), qrels(DATA / "qrels" / "test.tsv")
    texts = {j["_id"]: j["text"] for j in map(json.loads, open(DATA / "queries.jsonl"))}
    train_gold = set().union(*train.values())
    ids = sorted(test)
    near = near_duplicate_mask([texts[q] for q in ids], [texts[q] for q in sorted(train)])
    head = [q for q, m in zip(ids, near) if not m]
    shared = [q for q in head if test[q] & train_gold]
    fresh = [q for q in head if not test[q] & train_gold]
    print(f"headline claims {len(head)}: gold shared with a TRAIN claim {len(shared)}, not shared {len(fresh)}\n")
    print("| mode | stage | seed | Δ headline | Δ gold shared | Δ gold not shared |")
    print("| --- | --- | --- | --- | --- | --- |")
    for p in sys.argv[1:]:
        res = json.loads(Path(p).read_text())
        for run in res["runs"].values():
            for c in run["corpora"].values():
                for mode, m in c["modes"].items():
                    for d in m["decisions"]:
                        pq = d["per_query_delta"]
                        f = lambda qs: np.mean([pq[q] for q in qs if q in pq])  # noqa: E731
                        print(f"| {mode} | {d['stage']} | {d['seed']} | {f(head):+.4f} | {f(shared):+.4f} | {f(fresh):+.4f} |")


if __name__ == "__main__":
    main()
