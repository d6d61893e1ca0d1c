"""Is the teacher better than the student on this corpus — and can that be told without labels?

Every teacher-based mode (offline, hybrid) and the teacher judge rest on one assumption: the
teacher ranks this corpus better than the student. Per corpus this prints, for a student and a
teacher, (1) NDCG@10 of each frozen model on every judged test query (labels: the truth the
check is scored against, never used by the product) and (2) a label-free proxy for the same
comparison — the **known-item** task: pseudo-queries drawn from the corpus (titles and abstract
sentences, ``corpus_queries.pseudo_queries``, seeded) must retrieve the document they came from
(Azzopardi, de Rijke & Balog, SIGIR 2007); NDCG@10 with that document as the one relevant item.
Exact search (inner product of unit vectors, fp32 models), no engine, no adapter. With
``--judges`` it also scores, on the judged queries, the other label-free judges the gate can use:
BM25 (``gates.BM25Judge``) and the teacher fused with BM25 (``gates.FusionJudge``, reciprocal-rank
fusion) — is the fused judge a better ranker than the teacher alone on this corpus?

    python benchmarks/teacher_vs_student.py --student paraphrase-MiniLM-L3-v2 --teacher all-MiniLM-L6-v2 \\
        --data-dir ../shared/data/{scifact,med,cacm,npl,lisa,time}
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from antigravity.adaptation.corpus_queries import pseudo_queries  # noqa: E402
from antigravity.adaptation.gates import BM25Judge, FusionJudge, TeacherJudge, ranked_run  # noqa: E402
from antigravity.encoders.model import Encoder  # noqa: E402
from antigravity.evaluation import evaluate_per_query, paired_test  # noqa: E402
from antigravity.harness.benchmark import load_source  # noqa: E402
from antigravity.settings import Settings  # noqa: E402


def _ndcg(qrels, run) -> dict[str, float]:
    return {q: v["ndcg@10"] for q, v in evaluate_per_query(qrels, run).items()}


def judge_run(judge, qids: list[str], texts: list[str], doc_ids: list[str], k: int = 10) -> dict[str, dict[str, float]]:
    """A judge's ranking as a run ``{qid: {doc_id: 1 / rank}}`` (rank from 1; −1 padding dropped)."""
    rows = judge.rank(texts, k)
    return {q: {doc_ids[r]: 1.0 / (i + 1) for i, r in enumerate(rr) if r >= 0} for q, rr in zip(qids, rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--student", required=True)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--data-dir", nargs="+", required=True)
    ap.add_argument("--n-pseudo", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--judges", action="store_true", help="also BM25 and the teacher fused with BM25 on the judged queries")
    args = ap.parse_args()
    cache = Settings().resolved_cache_dir
    models = {role: Encoder(name, cache_dir=cache, precision="fp32") for role, name in (("student", args.student), ("teacher", args.teacher))}
    print(f"student {args.student}, teacher {args.teacher}; known-item: {args.n_pseudo} pseudo-queries (¼ titles), seed {args.seed}\n")
    extra = " BM25 NDCG@10 | RRF(teacher, BM25) NDCG@10 | RRF − teacher (p) |" if args.judges else ""
    print("| corpus | judged queries | student NDCG@10 | teacher NDCG@10 | teacher − student (p) | known-item student | known-item teacher | teacher − student (p) |" + extra)
    print("| --- | --- | --- | --- | --- | --- | --- | --- |" + " --- | --- | --- |" * bool(args.judges))
    for d in args.data_dir:
        src = load_source(None, d)
        has_titles = any(f.get("title") for f in src.doc_fields.values())
        n_t = args.n_pseudo // 4 if has_titles else 0
        texts, known = pseudo_queries(src.doc_fields, n_t, args.n_pseudo - n_t, args.seed, with_sources=True)
        pq_ids = [f"p{i}" for i in range(len(texts))]
        pq_rels = {q: {doc: 1} for q, doc in zip(pq_ids, known)}
        qids = list(src.eval_qrels)
        res = {}
        for role, enc in models.items():
            D = np.asarray(enc.encode(src.doc_texts), np.float32)
            Q = np.asarray(enc.encode([src.eval_queries[q] for q in qids]), np.float32)
            P = np.asarray(enc.encode(texts), np.float32)
            res[role] = (_ndcg(src.eval_qrels, ranked_run(qids, Q, src.doc_ids, D, k=10)), _ndcg(pq_rels, ranked_run(pq_ids, P, src.doc_ids, D, k=10)))
        (s_q, s_k), (t_q, t_k) = res["student"], res["teacher"]
        tq, tk = paired_test(s_q, t_q), paired_test(s_k, t_k)
        row = (f"| {src.name} | {len(qids)} | {np.mean(list(s_q.values())):.4f} | {np.mean(list(t_q.values())):.4f} | {tq['delta']:+.4f} ({tq['p']:.2g}) "
               f"| {np.mean(list(s_k.values())):.4f} | {np.mean(list(t_k.values())):.4f} | {tk['delta']:+.4f} ({tk['p']:.2g}) |")
        if args.judges:  # the gate's other judges on the judged queries (D: the teacher's documents, from the loop above)
            teacher = TeacherJudge(D, models["teacher"].encode)
            bm25 = BM25Judge(src.doc_texts)
            texts_q = [src.eval_queries[q] for q in qids]
            b_q = _ndcg(src.eval_qrels, judge_run(bm25, qids, texts_q, src.doc_ids))
            f_q = _ndcg(src.eval_qrels, judge_run(FusionJudge([teacher, bm25]), qids, texts_q, src.doc_ids))
            ft = paired_test(t_q, f_q)
            row += f" {np.mean(list(b_q.values())):.4f} | {np.mean(list(f_q.values())):.4f} | {ft['delta']:+.4f} ({ft['p']:.2g}) |"
        print(row, flush=True)
    for enc in models.values():
        getattr(enc, "close", lambda: None)()


if __name__ == "__main__":
    main()
