# reference only: BM25 test NDCG@10 (no training; needs query text)
import sys; sys.argv=['x']
from common import *
import defs, json
ids=json.load(open(f'{E}/ids.json'))
S={'doc_ids':ids['doc_ids']}
qte=load_qrels(f'{D}/qrels/test.tsv'); te=sorted(qte,key=int)
sc=defs.bm25_scores(S,te)
run={q:{S['doc_ids'][j]:float(sc[i,j]) for j in np.argsort(-sc[i])[:100]} for i,q in enumerate(te)}
r=pytrec_eval.RelevanceEvaluator(qte,{'ndcg_cut_10'}).evaluate(run)
print('BM25 test ndcg@10', np.mean([r[q]['ndcg_cut_10'] for q in te]))
