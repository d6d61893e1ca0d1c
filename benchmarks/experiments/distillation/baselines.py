"""Frozen student/teacher, ridge coordinate map L3->L6 (query vs L6 index), and 0.5/0.5 score fusion."""
import json, os, numpy as np, sys, scipy.stats as ss
import common as C
D3,Q3=C.load_emb('L3'); D6,Q6=C.load_emb('L6')
P=json.load(open(f'{C.OUT}/pseudo.json'))
dq=[C.QI[q] for q in C.DEV_Q]; tq=[C.QI[q] for q in C.TEST_Q]; iq=[C.QI[q] for q in C.DIST_Q]
os.makedirs(f'{C.OUT}/pq',exist_ok=True)
out=open(f'{C.OUT}/baselines.jsonl','w')
def rep(name,S,extra={}):
    dev=C.ndcg(S[dq],C.DEV_Q,C.QR_DEV); te,pq=C.ndcg(S[tq],C.TEST_Q,C.QR_TEST,per_query=True)
    np.save(f'{C.OUT}/pq/{name}.npy',pq)
    r=dict(name=name,dev=round(dev,4),test=round(te,4),**extra); print(json.dumps(r),flush=True); out.write(json.dumps(r)+'\n'); return dev,te
rep('frozen_L3',Q3@D3.T); rep('frozen_L6',Q6@D6.T)
srcs={'q':(Q3[iq],Q6[iq]),'qst':(np.concatenate([Q3[iq],np.load(f'{C.OUT}/L3_sent.npy'),np.load(f'{C.OUT}/L3_title.npy')]),
                                     np.concatenate([Q6[iq],np.load(f'{C.OUT}/L6_sent.npy'),np.load(f'{C.OUT}/L6_title.npy')]))}
for sname,(X,Y) in srcs.items():
    best=None
    for lam in [0.01,0.1,1,10,100]:
        W=np.linalg.solve(X.T@X+lam*np.eye(384),X.T@Y)
        qa=C.norm(Q3@W)
        d,t=rep(f'ridge_{sname}_lam{lam}',qa@D6.T,dict(kind='ridge L3q->L6 index'))
        for w in [0.3,0.5,0.7]:
            rep(f'fusion_{sname}_lam{lam}_w{w}',(1-w)*(Q3@D3.T)+w*(qa@D6.T),dict(kind='fusion'))
