"""Which feedback-training variant generalises to documents no feedback judged? Chosen on
TRAIN-side held-out feedback only; test scored once, for the current recipe and the chosen one.

SciFact, all-MiniLM-L6-v2 fp32, TRAIN qrels as feedback (α = 1, no teacher), recipe
``FeedbackConfig(epochs=10, lr=3e-3, identity_reg=1e-2)``. Per seed, the TRAIN queries are
split at random (the seed) into a fit part (80 %) and a held-out part (20 %); a held-out query
is **never-seen** when none of its relevant documents is judged in the fit part. Variants:

* ``qd``: query and document adapters, candidates = student top-100 ∪ judged (the engine's
  ``train_on_feedback`` today);
* ``q``: query adapter only (documents stay where the frozen student put them);
* ``qd+neg`` / ``q+neg``: as above, plus up to ``--negatives`` documents judged relevant for
  *other* fit queries as extra candidates (grade 0 unless judged for this query): the hard
  term can then no longer be lowered by raising every judged document at once — the
  "popular document" direction that the zero-parameter prior also follows and that costs the
  never-seen stratum;
* ``q+neg+reg``: ``q+neg`` with ``identity_reg = 0.1`` (10×: smaller moves);
* ``q+neg+t``: ``q+neg`` blended with the teacher all-mpnet-base-v2 (fp32), α = 0.5: the soft
  term is the teacher's softmax over the same candidates (``T = teacher.temperature``).

The variant with the best mean held-out never-seen NDCG@10 gain over seeds (ties: held-out
all) is chosen; then test (300 claims; strata all / seen / never seen, as in
``benchmarks/feedback_scifact.py``) is scored for ``qd`` and the chosen variant.

    python benchmarks/feedback_generalisation.py --seeds 0,1,2 --out results/feedback/generalisation_scifact_L6.json
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from feedback_common import write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--negatives", type=int, default=100)
    ap.add_argument("--variants", default="qd,q,qd+neg,q+neg,q+neg+reg,q+neg+t")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from antigravity import AntigravityEngine
    from antigravity.adaptation.adapter import ResidualAdapter
    from antigravity.adaptation.feedback_training import FeedbackConfig, feedback_candidates, feedback_distribution
    from antigravity.adaptation.gates import ranked_run
    from antigravity.adaptation.training import ListwiseTargets, fit_listwise
    from antigravity.datasets import doc_text, load_task
    from antigravity.evaluation import evaluate_per_query, paired_test

    task = load_task("SciFact")
    train_qrels, test_qrels = task.qrels["train"], task.qrels["test"]
    cfg = FeedbackConfig(epochs=10, lr=3e-3, identity_reg=1e-2)
    with AntigravityEngine(store__location=":memory:", student__precision="fp32", teacher__name="none") as e:
        e.ingest(({"_id": d, "text": doc_text(doc)} for d, doc in task.corpus.items()), batch_size=512)
        ctx = e.runner.context()
        doc_ids, D = ctx.doc_ids, ctx.raw_docs
        train_q = sorted(q for q in train_qrels if any(d in set(doc_ids) for d in train_qrels[q]))
        test_q = sorted(test_qrels)
        Qtr = np.asarray(e.encode_queries([task.queries[q] for q in train_q]), np.float32)
        Qte = np.asarray(e.encode_queries([task.queries[q] for q in test_q]), np.float32)
        rank = e.settings.adaptation.rank
        temperature = e.settings.teacher.temperature
        cache_dir = e.settings.resolved_cache_dir
    Tq = Td = None
    if any(v.endswith("+t") for v in args.variants.split(",")):
        from antigravity.encoders.model import Encoder

        teacher = Encoder("all-mpnet-base-v2", cache_dir=cache_dir, precision="fp32")
        Td = teacher.encode([doc_text(task.corpus[d]) for d in doc_ids])
        Tq = teacher.encode([task.queries[q] for q in train_q])
    row = {d: i for i, d in enumerate(doc_ids)}
    trow = {q: i for i, q in enumerate(train_q)}

    def ndcg(qids, Q, qrels, adapters):
        per = evaluate_per_query({q: qrels[q] for q in qids}, ranked_run(qids, Q, doc_ids, D, *adapters))
        return np.array([per[q]["ndcg@10"] for q in qids])

    def train(variant: str, fit_q: list[str], seed: int):
        judgments = [{row[d]: int(g) for d, g in train_qrels[q].items() if d in row} for q in fit_q]
        Sq = Qtr[[trow[q] for q in fit_q]]
        cand = feedback_candidates(Sq, D, [list(j) for j in judgments], 100)
        if "+neg" in variant:
            pos = np.array(sorted({r for j in judgments for r, g in j.items() if g > 0}), np.int64)
            rng = np.random.default_rng(seed)
            extra = np.stack([rng.choice(pos, size=min(args.negatives, len(pos)), replace=False) for _ in fit_q])
            cand = np.concatenate([cand, extra], axis=1)  # a repeated row is a duplicate candidate: harmless for the CE
        grades = np.array([[j.get(int(r), 0) for r in c] for j, c in zip(judgments, cand)], np.float32)
        alpha, probs = 1.0, np.full(cand.shape, 1.0 / cand.shape[1], np.float32)
        if variant.endswith("+t"):
            alpha = 0.5
            z = np.einsum("md,mkd->mk", Tq[[trow[q] for q in fit_q]], Td[cand]).astype(np.float64) / temperature
            probs = np.exp(z - z.max(1, keepdims=True))
            probs = (probs / probs.sum(1, keepdims=True)).astype(np.float32)
        data = ListwiseTargets(Sq, cand, probs, feedback_distribution(grades))
        torch.manual_seed(seed)
        q_ad = ResidualAdapter(D.shape[1], rank)
        d_ad = None if variant.startswith("q") and not variant.startswith("qd") else ResidualAdapter(D.shape[1], rank)
        fit_listwise(q_ad, d_ad, data, D, temperature=temperature, alpha=alpha, batch_size=cfg.batch_size, epochs=cfg.epochs, lr=cfg.lr,
                     weight_decay=cfg.weight_decay, identity_reg=0.1 if variant.endswith("+reg") else cfg.identity_reg, seed=seed)
        return q_ad, d_ad

    variants = args.variants.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    out: dict = {"student": "all-MiniLM-L6-v2", "precision": "fp32", "recipe": vars(cfg), "negatives": args.negatives, "held_out": {}, "test": {}}
    held_gain = {v: {"all": [], "never_seen": []} for v in variants}
    models: dict = {}
    for seed in seeds:
        perm = np.random.default_rng(1000 + seed).permutation(len(train_q))
        n_held = len(train_q) // 5
        held_q, fit_q = sorted(train_q[i] for i in perm[:n_held]), sorted(train_q[i] for i in perm[n_held:])
        fit_docs = {d for q in fit_q for d, g in train_qrels[q].items() if g > 0}
        never = [q for q in held_q if not any(d in fit_docs for d, g in train_qrels[q].items() if g > 0)]
        Qh = Qtr[[trow[q] for q in held_q]]
        frozen = ndcg(held_q, Qh, train_qrels, (None, None))
        mask = np.array([q in set(never) for q in held_q])
        out["held_out"][seed] = {"n_fit": len(fit_q), "n_held": len(held_q), "n_held_never_seen": int(mask.sum()), "frozen_all": float(frozen.mean()),
                                 "frozen_never_seen": float(frozen[mask].mean()), "variants": {}}
        for v in variants:
            ads = train(v, fit_q, seed)
            models[(v, seed)] = ads
            s = ndcg(held_q, Qh, train_qrels, ads)
            g_all, g_never = float((s - frozen).mean()), float((s - frozen)[mask].mean())
            held_gain[v]["all"].append(g_all)
            held_gain[v]["never_seen"].append(g_never)
            out["held_out"][seed]["variants"][v] = {"gain_all": g_all, "gain_never_seen": g_never}
            print(f"seed {seed} {v:8s} held-out gain all {g_all:+.4f} never-seen {g_never:+.4f} (n {mask.sum()})", flush=True)
    chosen = max(variants, key=lambda v: (np.mean(held_gain[v]["never_seen"]), np.mean(held_gain[v]["all"])))
    out["chosen"] = chosen
    out["held_out_mean"] = {v: {k: float(np.mean(x)) for k, x in g.items()} for v, g in held_gain.items()}
    print("chosen on held-out TRAIN feedback:", chosen, flush=True)

    # test, once: the current variant and the chosen one, fit on ALL train feedback per seed
    seen = {d for q in train_qrels.values() for d, g in q.items() if g > 0}
    strata = {"all": test_q, "seen": [q for q in test_q if any(d in seen for d in test_qrels[q])],
              "never_seen": [q for q in test_q if not any(d in seen for d in test_qrels[q])]}
    frozen = ndcg(test_q, Qte, test_qrels, (None, None))
    for v in dict.fromkeys(["qd", chosen]):
        rows = []
        for seed in seeds:
            s = ndcg(test_q, Qte, test_qrels, train(v, train_q, seed))
            rows.append(s)
        out["test"][v] = {}
        for name, qs in strata.items():
            idx = [test_q.index(q) for q in qs]
            f = frozen[idx]
            per_seed = [float(r[idx].mean()) for r in rows]
            mean_run = np.mean([r[idx] for r in rows], axis=0)
            p = paired_test(dict(zip(qs, f.tolist())), dict(zip(qs, mean_run.tolist())))["p"]
            out["test"][v][name] = {"n": len(qs), "frozen": float(f.mean()), "adapted_per_seed": per_seed, "adapted_mean": float(np.mean(per_seed)),
                                    "adapted_std": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0, "p_vs_frozen_seed_mean": p}
            print(f"test {v:8s} {name:10s} n {len(qs):3d} frozen {f.mean():.4f} adapted {np.mean(per_seed):.4f} ± {out['test'][v][name]['adapted_std']:.4f} p {p:.3g}", flush=True)
    write_json(args.out, out)


if __name__ == "__main__":
    main()
