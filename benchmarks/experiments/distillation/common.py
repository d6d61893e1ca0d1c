import json, numpy as np, csv, os
import pytrec_eval
import sys
sys.path.insert(0,os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _paths
D=_paths.data_dir()                 # AG_DATA (was /work/shared/data/scifact)
E=_paths.emb_dir()                  # AG_EMB  (was /tmp/emb)
OUT=_paths.out_dir('distillation')  # AG_OUT  (was /tmp/exp5)
ids=json.load(open(f'{E}/ids.json'))
DOC_IDS=ids['doc_ids']; Q_IDS=ids['query_ids']; QI={q:i for i,q in enumerate(Q_IDS)}
def load_qrels(split):
    qr={}
    with open(f'{D}/qrels/{split}.tsv') as f:
        r=csv.reader(f,delimiter='\t'); next(r)
        for q,d,s in r: qr.setdefault(q,{})[d]=int(s)
    return qr
QR_TRAIN=load_qrels('train'); QR_TEST=load_qrels('test')
_tr=sorted(QR_TRAIN.keys(),key=lambda x:int(x))
_perm=np.random.RandomState(0).permutation(len(_tr))
_nd=int(round(0.3*len(_tr)))
DEV_Q=sorted([_tr[i] for i in _perm[:_nd]],key=int); DIST_Q=sorted([_tr[i] for i in _perm[_nd:]],key=int)
QR_DEV={q:QR_TRAIN[q] for q in DEV_Q}
TEST_Q=sorted(QR_TEST.keys(),key=int)
def load_emb(m):
    # both from AG_EMB (make_embeddings.py, product Encoder). Originally L3 came from /tmp/exp5
    # (onnxruntime output '461' = pooled embedding); the registry L3 model equals it to ~1e-7.
    return np.load(f'{E}/{m}_corpus.npy'), np.load(f'{E}/{m}_queries.npy')
def norm(x): return x/np.linalg.norm(x,axis=1,keepdims=True)
def ndcg(scores, qids, qrels, per_query=False, k=100):
    """scores: [len(qids), ndocs] numpy"""
    run={}
    top=np.argpartition(-scores,k,axis=1)[:,:k]
    for r,q in enumerate(qids):
        run[q]={DOC_IDS[j]:float(scores[r,j]) for j in top[r]}
    ev=pytrec_eval.RelevanceEvaluator({q:qrels[q] for q in qids},{'ndcg_cut_10'})
    res=ev.evaluate(run)
    pq=np.array([res[q]['ndcg_cut_10'] for q in qids])
    return (pq.mean(),pq) if per_query else pq.mean()
