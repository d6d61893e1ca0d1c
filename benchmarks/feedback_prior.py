"""The opt-in feedback prior at serving time (``feedback.prior_boost``,
``feedback.prior_similarity``; :mod:`antigravity.serving.feedback_prior`) on SciFact,
all-MiniLM-L6-v2 fp32, TRAIN qrels as feedback.

Selection on TRAIN only: per seed, 20 % of the TRAIN queries are held out at random, the
other 80 % are the feedback, and each (boost, similarity) of the grid is scored by held-out
NDCG@10; the pair with the best mean held-out gain over seeds is chosen. Test: all TRAIN
qrels as feedback, the chosen pair, scored once on the 300 test claims in three strata (all;
relevant documents judged in feedback; never judged = the headline), beside the frozen
student and the global prior (boost every document judged relevant to any feedback query).

    python benchmarks/feedback_prior.py --seeds 0,1,2 --out results/feedback/prior_scifact_L6.json
"""

from __future__ import annotations

import argparse
import json
import os
from types import SimpleNamespace

import numpy as np
from feedback_common import write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--boosts", default="0.05,0.1,0.2")
    ap.add_argument("--similarities", default="0.5,0.6,0.7,0.8,0.9")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from antigravity import AntigravityEngine
    from antigravity.datasets import doc_text, load_task
    from antigravity.evaluation import evaluate_per_query, paired_test
    from antigravity.serving.feedback import FeedbackStore
    from antigravity.serving.feedback_prior import FeedbackPrior

    task = load_task("SciFact")
    train_qrels, test_qrels = task.qrels["train"], task.qrels["test"]
    out: dict = {"student": "all-MiniLM-L6-v2", "precision": "fp32", "selection": {}, "test": {}}
    with AntigravityEngine(store__location=":memory:", student__precision="fp32", teacher__name="none") as e:
        e.ingest(({"_id": d, "text": doc_text(doc)} for d, doc in task.corpus.items()), batch_size=512)
        train_q = sorted(q for q in train_qrels if q in task.queries)
        test_q = sorted(test_qrels)
        Qtr, Qte = e.encode_queries([task.queries[q] for q in train_q]), e.encode_queries([task.queries[q] for q in test_q])
        cand_tr = [[(h.doc_id, h.score, {}) for h in hs] for hs in e.search_vectors(Qtr, k=100, record=False)]
        cand_te = [[(h.doc_id, h.score, {}) for h in hs] for hs in e.search_vectors(Qte, k=100, record=False)]

        def store_of(qids):
            st = FeedbackStore(None, lambda: e.settings, lambda ids: set(ids))
            st.add_many([{"query": task.queries[q], "doc_id": d, "relevance": int(g), "source": "qrels"} for q in qids for d, g in train_qrels[q].items()])
            return st

        def ndcg(qids, qrels, cands):
            per = evaluate_per_query({q: qrels[q] for q in qids}, {q: {d: s for d, s, _ in hs} for q, hs in zip(qids, cands)})
            return np.array([per[q]["ndcg@10"] for q in qids])

        def reranked(store, Q, cands, boost, sim):
            ns = SimpleNamespace(feedback=SimpleNamespace(prior_boost=boost, prior_similarity=sim, prior_candidates=100))
            return FeedbackPrior(store, e.encoder, lambda: ns).rerank(Q, cands, 100)[0]

        def global_prior(judged, cands, boost):
            return [sorted(((d, s + (boost if d in judged else 0.0), p) for d, s, p in hs), key=lambda h: (-h[1], h[0])) for hs in cands]

        grid = [(float(b), float(s)) for b in args.boosts.split(",") for s in args.similarities.split(",")]
        gains: dict = {g: [] for g in grid}
        for seed in [int(x) for x in args.seeds.split(",")]:
            perm = np.random.default_rng(1000 + seed).permutation(len(train_q))
            n_held = len(train_q) // 5
            held = sorted(perm[:n_held].tolist())
            fit = sorted(perm[n_held:].tolist())
            st = store_of([train_q[i] for i in fit])
            hq = [train_q[i] for i in held]
            frozen = ndcg(hq, train_qrels, [cand_tr[i] for i in held])
            for b, s in grid:
                g = float((ndcg(hq, train_qrels, reranked(st, Qtr[held], [cand_tr[i] for i in held], b, s)) - frozen).mean())
                gains[(b, s)].append(g)
            out["selection"][seed] = {f"{b}/{s}": gains[(b, s)][-1] for b, s in grid}
            print(f"seed {seed}: " + ", ".join(f"{b}/{s} {gains[(b, s)][-1]:+.4f}" for b, s in grid), flush=True)
        boost, sim = max(grid, key=lambda g: np.mean(gains[g]))
        out["chosen"] = {"prior_boost": boost, "prior_similarity": sim, "held_out_gain": float(np.mean(gains[(boost, sim)]))}
        print("chosen on held-out TRAIN:", out["chosen"], flush=True)

        st = store_of(train_q)
        seen = {d for q in train_qrels.values() for d, g in q.items() if g > 0}
        strata = {"all": test_q, "seen": [q for q in test_q if any(d in seen for d in test_qrels[q])],
                  "never_seen": [q for q in test_q if not any(d in seen for d in test_qrels[q])]}
        runs = {"frozen": ndcg(test_q, test_qrels, cand_te), "global prior (+0.1 any judged)": ndcg(test_q, test_qrels, global_prior(seen, cand_te, 0.1)),
                "feedback prior (chosen)": ndcg(test_q, test_qrels, reranked(st, Qte, cand_te, boost, sim))}
        for name, qs in strata.items():
            idx = [test_q.index(q) for q in qs]
            row = {"n": len(qs)}
            for r, v in runs.items():
                row[r] = float(v[idx].mean())
                if r != "frozen":
                    row[f"p {r}"] = paired_test(dict(zip(qs, runs["frozen"][idx].tolist())), dict(zip(qs, v[idx].tolist())))["p"]
            out["test"][name] = row
            print(name, json.dumps(row), flush=True)
    write_json(args.out, out)


if __name__ == "__main__":
    main()
