"""Position-biased simulated clicks as relevance feedback on SciFact, all-MiniLM-L6-v2 (fp32),
feedback only (α = 1): inverse-propensity weighting (``propensity = "position"``) against
unweighted clicks (``"none"``), on three strata of the 300 test claims — all; relevant
documents seen in feedback (relevant to some TRAIN query); never seen (the headline).

Protocol. True relevance = SciFact TRAIN qrels. Each TRAIN query is shown the frozen
student's exact top-``k``; ``--sessions`` users per query click under the position-based
model of :mod:`antigravity.clicks` (examine rank ``r`` with ``p_r = r^(−η)``, click a relevant
document with ``ε+``, a non-relevant one with ``ε−``). The clicks go through a fresh in-memory
:class:`~antigravity.serving.feedback.FeedbackStore` (deduplicated per (query, document): the
rows training sees) and :func:`~antigravity.adaptation.feedback_training.run_feedback_training`
trains both arms on the same rows with the same adapter seed (recipe ``FeedbackConfig(epochs=10,
lr=3e-3, identity_reg=1e-2)``, chosen on held-out SciFact TRAIN feedback earlier, see
docs/feedback.md). Each arm's *candidate* adapter is scored (whether or not the click-qrels
gate promoted it; the gate decision is recorded). A seed fixes the clicks and the adapter
initialisation; the feedback hold-out is the fixed hash of the query text. Train-side check:
NDCG@10 of the held-out feedback queries against their TRUE TRAIN qrels. The reference arm
``shown_truth`` trains on the true relevance of the shown top-``k`` (what unbiased, noise-free
clicks would reveal). Nothing is chosen on test: the weighting uses the simulator's ``η`` (a
known propensity) and ``--clip``; with ``k = 10`` and ``η = 1`` the largest weight is 10, so
clip 10 never binds. ``--clips`` adds position arms with other clips and reports, as
``position_chosen``, the one whose mean NDCG@10 gain on the held-out feedback queries (their
TRUE TRAIN qrels: a train-side choice) is best — test is not looked at to choose.

    python benchmarks/feedback_clicks.py --seeds 0,1,2 --out results/feedback/clicks_scifact_L6.json

Statistics: per-stratum mean NDCG@10 per seed, mean ± sample std over seeds; the paired
t-test of position vs none is over test queries (each query's NDCG@10 averaged over seeds),
Holm-corrected over the three strata.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter

import numpy as np
from feedback_common import write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--k", type=int, default=10, help="documents shown per query (the frozen student's top-k)")
    ap.add_argument("--sessions", type=int, default=5)
    ap.add_argument("--eta", type=float, default=1.0, help="η of the simulated examination p_r = r^-η")
    ap.add_argument("--eps-pos", type=float, default=1.0)
    ap.add_argument("--eps-neg", type=float, default=0.1)
    ap.add_argument("--weight-eta", type=float, default=None, help="η of the weighting (default: --eta, the true propensity)")
    ap.add_argument("--clip", type=float, default=10.0)
    ap.add_argument("--clips", default="", help="extra position arms with these clips (comma list); the one with the best mean "
                    "held-out TRUE-qrels gain over seeds is reported as position_chosen (a train-side choice)")
    ap.add_argument("--no-reference", action="store_true", help="skip the shown_truth reference arm")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from antigravity import AntigravityEngine
    from antigravity.adaptation.feedback_training import FeedbackConfig, run_feedback_training
    from antigravity.adaptation.gates import ranked_run
    from antigravity.clicks import simulate_clicks
    from antigravity.datasets import doc_text, load_task
    from antigravity.evaluation import evaluate_per_query, holm, paired_test
    from antigravity.serving.feedback import FeedbackStore, query_key

    t_start = time.time()
    seeds = [int(s) for s in args.seeds.split(",")]
    weight_eta = args.eta if args.weight_eta is None else args.weight_eta
    cfg = FeedbackConfig(epochs=10, lr=3e-3, identity_reg=1e-2)
    task = load_task("SciFact")
    train, test = task.qrels["train"], task.qrels["test"]
    seen = {d for q in train.values() for d, g in q.items() if g > 0}
    strata = {"all": sorted(test), "seen": sorted(q for q in test if any(d in seen for d in test[q])),
              "never_seen": sorted(q for q in test if not any(d in seen for d in test[q]))}
    train_q, test_q = sorted(train), sorted(test)
    qid_of_key = {query_key(task.queries[q]): q for q in train_q}
    clips = {f"position_clip{c:g}": c for c in (float(x) for x in args.clips.split(",") if x)}
    arms = ["none", "position", *clips] + ([] if args.no_reference else ["shown_truth"])
    out = {"student": "all-MiniLM-L6-v2", "precision": "fp32", "alpha": 1.0, "config": vars(cfg),
           "click_model": {"k": args.k, "sessions": args.sessions, "eta": args.eta, "eps_pos": args.eps_pos, "eps_neg": args.eps_neg},
           "weighting": {"eta": weight_eta, "clip": args.clip}, "strata_sizes": {k: len(v) for k, v in strata.items()}, "seeds": {}}

    with AntigravityEngine(store__location=":memory:", student__precision="fp32", teacher__name="none", feedback__alpha=1.0) as e:
        e.ingest(({"_id": d, "text": doc_text(doc)} for d, doc in task.corpus.items()), batch_size=512)
        ctx = e.adaptation_context()
        doc_ids, D, s = ctx.doc_ids, ctx.raw_docs, e.settings
        stored = set(doc_ids)
        Qtr, Qte = e.encode_queries([task.queries[q] for q in train_q]), e.encode_queries([task.queries[q] for q in test_q])
        shown_run = ranked_run(train_q, Qtr, doc_ids, D, k=args.k)
        shown = {q: sorted(r, key=lambda d: (-r[d], d)) for q, r in shown_run.items()}
        rel_shown = Counter(i + 1 for q in train_q for i, d in enumerate(shown[q]) if train[q].get(d, 0) >= 1)
        out["relevant_shown_by_rank"] = {r: rel_shown[r] for r in range(1, args.k + 1)}
        out["train_relevant_pairs"] = sum(1 for q in train_q for g in train[q].values() if g >= 1)

        def ndcg(qrels, qids, Q, adapters=(None, None)):
            per = evaluate_per_query({q: qrels[q] for q in qids}, ranked_run(qids, Q, doc_ids, D, *adapters))
            return {q: per[q]["ndcg@10"] for q in qids}

        frozen = ndcg(test, test_q, Qte)
        truth_rows = [{"query": task.queries[q], "doc_id": d, "relevance": int(train[q][d]), "source": "judgment", "rank": i + 1}
                      for q in train_q for i, d in enumerate(shown[q]) if train[q].get(d, 0) >= 1]
        per_query = {arm: {q: [] for q in test_q} for arm in arms}
        for seed in seeds:
            clicks = simulate_clicks(shown, train, task.queries, sessions=args.sessions, eta=args.eta, eps_pos=args.eps_pos, eps_neg=args.eps_neg, seed=seed)
            res: dict = {"n_click_events": len(clicks),
                         "click_precision": float(np.mean([train[qid_of_key[query_key(c["query"])]].get(c["doc_id"], 0) >= 1 for c in clicks])),
                         "clicks_by_rank": dict(sorted(Counter(c["rank"] for c in clicks).items())),
                         "relevant_clicks_by_rank": dict(sorted(Counter(c["rank"] for c in clicks if train[qid_of_key[query_key(c["query"])]].get(c["doc_id"], 0) >= 1).items()))}
            for arm in arms:
                store = FeedbackStore(None, lambda: e.settings, lambda ids: set(ids) & stored, collection="clicks")
                store.add_many(truth_rows if arm == "shown_truth" else clicks)
                fq = store.queries()
                t0 = time.time()
                rep = run_feedback_training(ctx, fq, alpha=1.0, temperature=s.teacher.temperature, candidates=s.feedback.candidates,
                                            holdout_fraction=s.feedback.holdout_fraction, seed=seed, config=cfg,
                                            propensity="position" if arm.startswith("position") else "none", propensity_eta=weight_eta,
                                            propensity_clip=clips.get(arm, args.clip))
                m = rep.metrics
                cand = ndcg(test, test_q, Qte, rep.candidate)
                held = [qid_of_key[k] for k in m["held_out_keys"]]
                Qh = Qtr[[train_q.index(q) for q in held]]
                held_true = np.mean(list(ndcg(train, held, Qh, rep.candidate).values())) - np.mean(list(ndcg(train, held, Qh).values()))
                r = {"n_rows": store.count(), "n_queries": len(fq), "n_train": m["n_train"], "n_held_out": m["n_held_out"], "promoted_by_click_gate": rep.ok,
                     "gate": rep.reason, "held_out_true_ndcg_gain": float(held_true), "train_time_s": time.time() - t0,
                     **{c: m[c] for c in ("n_click_rows", "n_click_rows_unknown_rank", "n_click_rows_clipped", "max_click_weight") if c in m}}
                for name, qs in strata.items():
                    r[name] = {"frozen": float(np.mean([frozen[q] for q in qs])), "adapted": float(np.mean([cand[q] for q in qs]))}
                for q in test_q:
                    per_query[arm][q].append(cand[q])
                res[arm] = r
                store.close()
                print(seed, arm, json.dumps({k: v for k, v in r.items() if k != "gate"}, default=float), flush=True)
            out["seeds"][seed] = res

    if clips:  # the clip with the best mean held-out gain (true TRAIN qrels of held-out feedback queries), never test
        gains = {arm: float(np.mean([out["seeds"][sd][arm]["held_out_true_ndcg_gain"] for sd in seeds])) for arm in ["position", *clips]}
        best = max(gains, key=lambda a: gains[a])
        out["clip_choice"] = {"held_out_true_ndcg_gain": gains, "chosen": best, "clip": clips.get(best, args.clip)}
        arms.append("position_chosen")
        per_query["position_chosen"] = per_query[best]
        for sd in seeds:
            out["seeds"][sd]["position_chosen"] = out["seeds"][sd][best]
    summary, tests, tests_chosen = {}, [], []
    for name, qs in strata.items():
        row = {"n": len(qs), "frozen": float(np.mean([frozen[q] for q in qs]))}
        for arm in arms:
            vals = [out["seeds"][sd][arm][name]["adapted"] for sd in seeds]
            row[arm] = {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0, "per_seed": vals}
        d = [out["seeds"][sd]["position"][name]["adapted"] - out["seeds"][sd]["none"][name]["adapted"] for sd in seeds]
        row["position_minus_none"] = {"mean": float(np.mean(d)), "std": float(np.std(d, ddof=1)) if len(d) > 1 else 0.0, "per_seed": d}
        avg = {arm: {q: float(np.mean(per_query[arm][q])) for q in qs} for arm in arms}
        row["paired_position_vs_none"] = paired_test(avg["none"], avg["position"])
        row["paired_none_vs_frozen"] = paired_test({q: frozen[q] for q in qs}, avg["none"])
        row["paired_position_vs_frozen"] = paired_test({q: frozen[q] for q in qs}, avg["position"])
        tests.append(row["paired_position_vs_none"]["p"])
        if clips:
            row["paired_position_chosen_vs_none"] = paired_test(avg["none"], avg["position_chosen"])
            tests_chosen.append(row["paired_position_chosen_vs_none"]["p"])
        summary[name] = row
    for name, p in zip(strata, holm(tests)):
        summary[name]["paired_position_vs_none"]["p_holm"] = p
    for name, p in zip(strata, holm(tests_chosen)):
        summary[name]["paired_position_chosen_vs_none"]["p_holm"] = p
    out["summary"] = summary
    out["wall_time_s"] = time.time() - t_start
    print(json.dumps(summary, indent=1, default=float))
    write_json(args.out, out)


if __name__ == "__main__":
    main()
