"""Ranking-KL distillation of teacher (all-MiniLM-L6-v2) into a residual adapter on the student (paraphrase-MiniLM-L3-v2).
Label-free: inputs = 566 non-dev train query texts (+ corpus sentences / titles). Dev (30% train qrels, seed 0) for early stopping."""
import argparse, json, os, time, numpy as np, torch, torch.nn as nn, torch.nn.functional as F
torch.set_num_threads(1)
import common as C
ap=argparse.ArgumentParser()
ap.add_argument('--inputs',default='q')          # letters: q=dist train queries, s=sentences, t=titles
ap.add_argument('--side',default='q')            # q | d | both (separate adapters) | shared
ap.add_argument('--adapter',default='lowrank')   # lowrank | full | mlp
ap.add_argument('--rank',type=int,default=32)
ap.add_argument('--hidden',type=int,default=256)
ap.add_argument('--T',type=float,default=0.05)
ap.add_argument('--K',type=int,default=0)        # 0 = full-corpus softmax; else student topK U teacher topK
ap.add_argument('--lr',type=float,default=1e-3)
ap.add_argument('--wd',type=float,default=1e-4)  # L2 pull to identity: wd*||Delta||^2 (sum of squares of residual params)
ap.add_argument('--epochs',type=int,default=20)
ap.add_argument('--patience',type=int,default=4)
ap.add_argument('--bs',type=int,default=128)
ap.add_argument('--qrep',type=int,default=1)     # repeat train queries this many times per epoch
ap.add_argument('--w_kl',type=float,default=1.0)
ap.add_argument('--w_ic',type=float,default=0.0) # inverse-cloze CE (pseudo-query -> own doc), full corpus
ap.add_argument('--T_ic',type=float,default=0.05)
ap.add_argument('--learn_scale',type=int,default=0)  # learnable student temperature
ap.add_argument('--kl_qonly',type=int,default=0)  # apply KL only to real (train) queries; pseudo-queries only feed IC
ap.add_argument('--seed',type=int,default=0)
ap.add_argument('--tag',default='')
ap.add_argument('--out',default=f'{C.OUT}/results.jsonl')
ap.add_argument('--save',default='')
a=ap.parse_args()
torch.manual_seed(a.seed); np.random.seed(a.seed)
t0=time.time()
D3,Q3=C.load_emb('L3'); D6,Q6=C.load_emb('L6')
X3,X6,XD=[],[],[]   # inputs student/teacher vecs, own doc (-1 for queries)
if 'q' in a.inputs:
    qi=[C.QI[q] for q in C.DIST_Q]*a.qrep
    X3.append(Q3[qi]); X6.append(Q6[qi]); XD.append(-np.ones(len(qi),int))
P=json.load(open(f'{C.OUT}/pseudo.json'))   # from prep_pseudo.py (needed even for --inputs q, as originally)
for ch,name,key in [('s','sent','sent_doc'),('t','title','title_doc')]:
    if ch in a.inputs:
        X3.append(np.load(f'{C.OUT}/L3_{name}.npy')); X6.append(np.load(f'{C.OUT}/L6_{name}.npy')); XD.append(np.array(P[key]))
X3=torch.tensor(np.concatenate(X3)); X6=torch.tensor(np.concatenate(X6)); XD=torch.tensor(np.concatenate(XD))
D3t=torch.tensor(D3); D6t=torch.tensor(D6); N=len(X3); nd=D3t.shape[0]
if a.K>0:
    with torch.no_grad():
        cs=torch.topk(X3@D3t.T,a.K,dim=1).indices; ct=torch.topk(X6@D6t.T,a.K,dim=1).indices
        CAND=torch.cat([cs,ct],1)
class Adapter(nn.Module):
    def __init__(s,d=384):
        super().__init__()
        if a.adapter=='lowrank':
            s.A=nn.Parameter(torch.randn(a.rank,d)/d**0.5); s.B=nn.Parameter(torch.zeros(d,a.rank))
        elif a.adapter=='full':
            s.W=nn.Parameter(torch.zeros(d,d))
        else:
            s.l1=nn.Linear(d,a.hidden); s.l2=nn.Linear(a.hidden,d); nn.init.zeros_(s.l2.weight); nn.init.zeros_(s.l2.bias)
    def forward(s,x):
        if a.adapter=='lowrank': y=x+(x@s.A.T)@s.B.T
        elif a.adapter=='full': y=x+x@s.W.T
        else: y=x+s.l2(F.gelu(s.l1(x)))
        return F.normalize(y,dim=-1)
    def reg(s):
        if a.adapter=='lowrank': return ((s.B@s.A)**2).sum()
        if a.adapter=='full': return (s.W**2).sum()
        return (s.l2.weight**2).sum()+(s.l1.weight**2).sum()*0.0+ (s.l2.bias**2).sum()
I=lambda x:x
fq=fd=I; mods=[]
if a.side in('q','both'): fq=Adapter(); mods.append(fq)
if a.side in('d','both'): fd=Adapter(); mods.append(fd)
if a.side=='shared': fq=fd=Adapter(); mods.append(fq)
params=[p for m in mods for p in m.parameters()]
logscale=nn.Parameter(torch.tensor(0.0))
if a.learn_scale: params.append(logscale)
nparam=sum(p.numel() for m in mods for p in m.parameters())
opt=torch.optim.Adam(params,lr=a.lr)
def evaluate(per_query=False):
    with torch.no_grad():
        qv=fq(torch.tensor(Q3)).numpy(); dv=fd(D3t).numpy()
    S=qv@dv.T
    dev=C.ndcg(S[[C.QI[q] for q in C.DEV_Q]],C.DEV_Q,C.QR_DEV)
    te=C.ndcg(S[[C.QI[q] for q in C.TEST_Q]],C.TEST_Q,C.QR_TEST,per_query=per_query)
    return dev,te
dev0,te0=evaluate()
best=(dev0,te0,0,[ {k:v.clone() for k,v in m.state_dict().items()} for m in mods]); bad=0; hist=[(0,dev0,te0)]
for ep in range(1,a.epochs+1):
    perm=torch.randperm(N)
    for i in range(0,N,a.bs):
        b=perm[i:i+a.bs]
        dv=fd(D3t) if a.side!='q' else D3t
        qv=fq(X3[b])
        ss=qv@dv.T; st=X6[b]@D6t.T
        loss=0.
        if a.w_kl>0:
            sc=torch.exp(logscale)/a.T
            ls=ss*sc; lt=st/a.T
            if a.K>0:
                mask=torch.full_like(ls,float('-inf')); mask.scatter_(1,CAND[b],0.)
                ls=ls+mask; lt=lt+mask
            pt=F.softmax(lt,1); lps=F.log_softmax(ls,1)
            klr=(pt*(torch.log(pt.clamp_min(1e-30))-lps)).nan_to_num().sum(1)
            if a.kl_qonly:
                mq=XD[b]<0; kl=klr[mq].mean() if mq.any() else klr.sum()*0
            else: kl=klr.mean()  # masked entries have pt=0
            loss=loss+a.w_kl*a.T**2*kl
        if a.w_ic>0:
            m=XD[b]>=0
            if m.any():
                loss=loss+a.w_ic*a.T_ic**2*F.cross_entropy(ss[m]/a.T_ic,XD[b][m])
        loss=loss+a.wd*sum(mm.reg() for mm in mods)
        opt.zero_grad(); loss.backward(); opt.step()
    dev,te=evaluate(); hist.append((ep,dev,te))
    print(f'ep{ep} dev {dev:.4f} test {te:.4f} t={time.time()-t0:.0f}s',flush=True)
    if dev>best[0]+1e-5: best=(dev,te,ep,[{k:v.clone() for k,v in m.state_dict().items()} for m in mods]); bad=0
    else:
        bad+=1
        if bad>=a.patience: break
for m,sd in zip(mods,best[3]): m.load_state_dict(sd)
dev,(te,pq)=evaluate(per_query=True)
os.makedirs(f'{C.OUT}/pq',exist_ok=True)
np.save(f'{C.OUT}/pq/{a.tag or "run"}_s{a.seed}.npy',pq)
if a.save: torch.save([m.state_dict() for m in mods],a.save)
rec=dict(vars(a),dev=round(dev,4),test=round(te,4),best_ep=best[2],nparam=nparam,time=round(time.time()-t0,1),hist=[(e,round(d,4),round(t,4)) for e,d,t in hist])
print(json.dumps(rec),flush=True)
open(a.out,'a').write(json.dumps(rec)+'\n')
