"""Shared utilities for exp4: data, split, eval, adapters, training loops, cycles+gate."""
import json, time, os, math
import numpy as np, torch, pytrec_eval
torch.set_num_threads(1)
import sys
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _paths
D = _paths.data_dir()                 # AG_DATA (was /work/shared/data/scifact)
E = _paths.emb_dir()                  # AG_EMB  (was /tmp/emb)
OUT = _paths.out_dir('homeostasis')   # AG_OUT  (was /tmp/exp4, the working directory)

def load_qrels(path):
    q = {}
    for i, l in enumerate(open(path)):
        if i == 0: continue
        a, b, c = l.strip().split('\t')
        q.setdefault(a, {})[b] = int(c)
    return q

def load(model='L6'):
    ids = json.load(open(f'{E}/ids.json'))
    Dm = np.load(f'{E}/{model}_corpus.npy').astype(np.float32)
    Qm = np.load(f'{E}/{model}_queries.npy').astype(np.float32)
    qtr, qte = load_qrels(f'{D}/qrels/train.tsv'), load_qrels(f'{D}/qrels/test.tsv')
    qpos = {q: i for i, q in enumerate(ids['query_ids'])}
    tr_ids = sorted(qtr, key=lambda x: int(x))
    rng = np.random.RandomState(0)
    perm = rng.permutation(len(tr_ids))
    ndev = int(round(0.3 * len(tr_ids)))
    dev_ids = sorted([tr_ids[i] for i in perm[:ndev]], key=int)
    traf_ids = sorted([tr_ids[i] for i in perm[ndev:]], key=int)
    te_ids = sorted(qte, key=int)
    S = dict(doc_ids=ids['doc_ids'], D=Dm, Q=Qm, qpos=qpos,
             dev_ids=dev_ids, traf_ids=traf_ids, te_ids=te_ids,
             qrels_dev={q: qtr[q] for q in dev_ids}, qrels_te=qte)
    S['Qdev'] = Qm[[qpos[q] for q in dev_ids]]
    S['Qtraf'] = Qm[[qpos[q] for q in traf_ids]]
    S['Qte'] = Qm[[qpos[q] for q in te_ids]]
    return S

def norm(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)

def per_query_ndcg(Q, Dm, qids, qrels, doc_ids, k=100):
    Q, Dm = norm(Q), norm(Dm)
    s = Q @ Dm.T
    top = np.argpartition(-s, k, axis=1)[:, :k]
    run = {}
    for i, q in enumerate(qids):
        run[q] = {doc_ids[j]: float(s[i, j]) for j in top[i]}
    ev = pytrec_eval.RelevanceEvaluator(qrels, {'ndcg_cut_10'})
    r = ev.evaluate(run)
    return np.array([r[q]['ndcg_cut_10'] for q in qids])

def evaluate(S, Dadj=None, qf=None, split='dev'):
    """Dadj: adapted doc matrix; qf: function on query matrix. returns mean ndcg@10 and per-query."""
    Dm = S['D'] if Dadj is None else Dadj
    Q = S['Qdev'] if split == 'dev' else S['Qte']
    if qf is not None: Q = qf(Q)
    ids = S['dev_ids'] if split == 'dev' else S['te_ids']
    qr = S['qrels_dev'] if split == 'dev' else S['qrels_te']
    pq = per_query_ndcg(Q, Dm, ids, qr, S['doc_ids'])
    return pq.mean(), pq

# ---------------- adapters ----------------
class LowRank(torch.nn.Module):
    def __init__(self, d=384, r=32, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.A = torch.nn.Parameter(torch.randn(r, d, generator=g) / math.sqrt(d))
        self.B = torch.nn.Parameter(torch.zeros(d, r))
    def forward(self, x):
        return x + (x @ self.A.T) @ self.B.T

class MLP(torch.nn.Module):
    def __init__(self, d=384, h=64, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W1 = torch.nn.Parameter(torch.randn(h, d, generator=g) / math.sqrt(d))
        self.b1 = torch.nn.Parameter(torch.zeros(h))
        self.W2 = torch.nn.Parameter(torch.zeros(d, h))
    def forward(self, x):
        return x + torch.nn.functional.gelu(x @ self.W1.T + self.b1) @ self.W2.T

def make_adapter(kind, seed, r=32):
    return LowRank(r=r, seed=seed) if kind == 'lowrank' else MLP(h=r * 2, seed=seed)

def nparams(m):
    return sum(p.numel() for p in m.parameters())

def apply(m, X):
    with torch.no_grad():
        return norm(m(torch.from_numpy(X)).numpy())

def l2_to_id(m):
    return sum((p ** 2).sum() for n, p in m.named_parameters() if n in ('B', 'W2'))

def train_targets(m, X, T, W=None, lr=1e-3, epochs=200, bs=512, wd=1e-3, seed=0):
    """pointwise: minimise w*||norm(f(x)) - t||^2 + wd*||B||^2 (pull toward identity)."""
    X, T = torch.from_numpy(X), torch.from_numpy(T)
    W = torch.ones(len(X)) if W is None else torch.from_numpy(W.astype(np.float32))
    opt = torch.optim.Adam(m.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    n = len(X)
    for ep in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, bs):
            b = perm[i:i + bs]
            y = torch.nn.functional.normalize(m(X[b]), dim=1)
            loss = (W[b] * ((y - T[b]) ** 2).sum(1)).sum() / W[b].sum() + wd * l2_to_id(m)
            opt.zero_grad(); loss.backward(); opt.step()
    return m

def train_listwise(m, Qx, Dall, cand, P, side='both', tau=0.05, lr=1e-3, epochs=30, bs=32, wd=1e-3,
                   seed=0, Qw=None):
    """listwise KL(P || softmax(cos(fq, fd)/tau)) over candidate lists cand (nq x K)."""
    Qx, Dall = torch.from_numpy(Qx), torch.from_numpy(Dall)
    cand, P = torch.from_numpy(cand), torch.from_numpy(P.astype(np.float32))
    opt = torch.optim.Adam(m.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    n = len(Qx)
    F = torch.nn.functional
    for ep in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, bs):
            b = perm[i:i + bs]
            q = Qx[b]; dc = Dall[cand[b]]  # B x K x d
            if side in ('both', 'query'): q = m(q)
            if side in ('both', 'doc'): dc = m(dc)
            q = F.normalize(q, dim=-1); dc = F.normalize(dc, dim=-1)
            s = torch.einsum('bd,bkd->bk', q, dc) / tau
            loss = -(P[b] * F.log_softmax(s, 1)).sum(1).mean() + wd * l2_to_id(m)
            opt.zero_grad(); loss.backward(); opt.step()
    return m

def adapted_eval(S, m, side, split):
    Dadj = apply(m, S['D']) if side in ('both', 'doc') else S['D']
    qf = (lambda Q: apply(m, Q)) if side in ('both', 'query') else None
    return evaluate(S, Dadj, qf, split)

def record_traffic(S, Qtraf, k=50):
    """signals recorded during search with the frozen index: top-k idx + scores per query."""
    s = Qtraf @ S['D'].T
    top = np.argsort(-s, axis=1)[:, :k]
    return top, np.take_along_axis(s, top, 1)

def run_cycles(S, build_and_train, seed, ncycles=3, chunk_mode='third', warm=False, side='both',
               log=None):
    """build_and_train(S, Qchunk, prev_model, seed) -> model (trained from raw vectors).
    Gate: promote if dev ndcg does not drop vs currently promoted."""
    rng = np.random.RandomState(100 + seed)
    order = rng.permutation(len(S['Qtraf']))
    chunks = np.array_split(order, ncycles)
    dev0, _ = evaluate(S, split='dev'); te0, pq0 = evaluate(S, split='test')
    rows = [dict(cycle=0, dev=dev0, test=te0, promoted=True, secs=0.0)]
    best_dev, promoted, served_pq = dev0, None, pq0
    prev = None
    for c in range(ncycles):
        idx = chunks[c] if chunk_mode == 'third' else order
        t = time.time()
        m = build_and_train(S, S['Qtraf'][idx], prev if warm else None, seed * 10 + c)
        secs = time.time() - t
        dv, _ = adapted_eval(S, m, side, 'dev'); tv, pq = adapted_eval(S, m, side, 'test')
        ok = dv >= best_dev
        if ok: best_dev, promoted, served_pq = dv, m, pq
        prev = m
        rows.append(dict(cycle=c + 1, dev=dv, test=tv, promoted=bool(ok), secs=secs))
    final_dev = best_dev
    final_test = served_pq.mean()
    return dict(rows=rows, final_dev=final_dev, final_test=final_test, pq=served_pq, pq0=pq0,
                model=promoted)
