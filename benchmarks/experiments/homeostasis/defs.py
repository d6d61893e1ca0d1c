"""Signal definitions: traffic chunk (query embeddings only) -> targets -> trained adapter.
Each builder returns a function(S, Qchunk, prev, seed) -> adapter (trained from RAW vectors)."""
import numpy as np, torch
from common import *

def _init(prev, kind, seed, r):
    m = make_adapter(kind, seed, r)
    if prev is not None: m.load_state_dict(prev.state_dict())
    return m

def _topk(S, Q, k=50):
    s = Q @ S['D'].T
    top = np.argsort(-s, axis=1)[:, :k]
    return top, np.take_along_axis(s, top, 1)

# (a) hubness ---------------------------------------------------------------
def hub(beta=0.1, minocc=3, side='both', k=10, mode='hub', kind='lowrank', r=32, lr=3e-3, epochs=60, wd=1e-3):
    """mode='hub': only docs with k-occurrence >= minocc are pushed, strength beta*log2(1+N_k/minocc)
       mode='all': every retrieved doc pushed away from centroid of queries retrieving it (top-k) by beta."""
    def f(S, Q, prev, seed):
        top, _ = _topk(S, Q, k)
        N = len(S['D'])
        cnt = np.bincount(top.ravel(), minlength=N).astype(np.float32)
        csum = np.zeros_like(S['D'])
        np.add.at(csum, top.ravel(), np.repeat(Q, k, axis=0))
        T = S['D'].copy()
        sel = cnt >= (minocc if mode == 'hub' else 1)
        c = norm(csum[sel] + 1e-9)
        w = beta * (np.log2(1 + cnt[sel] / minocc) if mode == 'hub' else 1.0)
        T[sel] = norm(S['D'][sel] - (w[:, None] if np.ndim(w) else w) * c)
        X, TT = S['D'], T
        if side == 'both':  # queries anchored to themselves
            X = np.concatenate([X, Q]); TT = np.concatenate([TT, Q])
        m = _init(prev, kind, seed, r)
        return train_targets(m, X, TT, lr=lr, epochs=epochs, wd=wd, seed=seed)
    return f

# (b) anisotropy ------------------------------------------------------------
def aniso(lam=0.25, side='both', udef='mean', kind='lowrank', r=32, lr=3e-3, epochs=60, wd=1e-3):
    def f(S, Q, prev, seed):
        top, _ = _topk(S, Q, 10)
        served = np.concatenate([Q, S['D'][np.unique(top.ravel())]])
        if udef == 'mean':
            u = served.mean(0)
        else:  # top principal direction of centred served vectors
            u = np.linalg.svd(served - served.mean(0), full_matrices=False)[2][0]
        u = u / np.linalg.norm(u)
        X = np.concatenate([S['D'], Q])
        T = norm(X - lam * (X @ u)[:, None] * u[None])
        m = _init(prev, kind, seed, r)
        return train_targets(m, X, T, lr=lr, epochs=epochs, wd=wd, seed=seed)
    return f

# (c) score-margin collapse: listwise self/PRF distillation ------------------
def margin(teacher='self', tau_t=0.02, tau_s=0.05, frac=0.5, alpha=0.3, K=50, side='both', kind='lowrank',
           r=32, lr=1e-3, epochs=20, wd=1e-3):
    """queries whose top1-top10 margin is in the lowest `frac` get a sharpened teacher distribution.
    teacher='self': softmax(s/tau_t) of frozen scores; 'prf': softmax(cos(norm(q+alpha*mean top3), d)/tau_t)."""
    def f(S, Q, prev, seed):
        top, sc = _topk(S, Q, K)
        mg = sc[:, 0] - sc[:, 9]
        sel = mg <= np.quantile(mg, frac)
        Qs, cand, scs = Q[sel], top[sel], sc[sel]
        if teacher == 'self':
            z = scs / tau_t
        else:
            qe = norm(Qs + alpha * S['D'][cand[:, :3]].mean(1))
            z = np.einsum('bd,bkd->bk', qe, S['D'][cand]) / tau_t
        P = np.exp(z - z.max(1, keepdims=True)); P /= P.sum(1, keepdims=True)
        m = _init(prev, kind, seed, r)
        return train_listwise(m, Qs, S['D'], cand, P, side=side, tau=tau_s, lr=lr, epochs=epochs, wd=wd,
                              seed=seed)
    return f

# (d) pseudo-relevance structure (co-retrieval / mutual NN) -----------------
def prs(gamma=0.1, gq=0.1, k=10, mnn=True, side='both', kind='lowrank', r=32, lr=3e-3, epochs=60, wd=1e-3):
    """docs co-retrieved in the same top-k lists pulled toward the co-retrieval-weighted mean of
    their (mutual-kNN) co-retrieved docs; queries pulled toward mean of their top-3."""
    def f(S, Q, prev, seed):
        top, _ = _topk(S, Q, k)
        N = len(S['D'])
        Dm = S['D']
        T = Dm.copy()
        uniq = np.unique(top.ravel())
        pos = {d: i for i, d in enumerate(uniq)}
        C = np.zeros((len(uniq), len(uniq)), np.float32)
        for row in top:
            ii = [pos[d] for d in row]
            C[np.ix_(ii, ii)] += 1
        np.fill_diagonal(C, 0)
        if mnn:  # keep pairs that are mutual 10-NN in doc-doc cosine (among retrieved docs)
            sim = Dm[uniq] @ Dm[uniq].T
            np.fill_diagonal(sim, -1)
            kk = min(10, len(uniq) - 1)
            nn = np.argsort(-sim, 1)[:, :kk]
            M = np.zeros_like(C, dtype=bool)
            M[np.repeat(np.arange(len(uniq)), kk), nn.ravel()] = True
            C = C * (M & M.T)
        has = C.sum(1) > 0
        tgt = norm(C[has] @ Dm[uniq] + 1e-9)
        T[uniq[has]] = norm(Dm[uniq[has]] + gamma * tgt)
        TQ = norm(Q + gq * Dm[top[:, :3]].mean(1))
        X = np.concatenate([Dm, Q]); TT = np.concatenate([T, TQ])
        m = _init(prev, kind, seed, r)
        return train_targets(m, X, TT, lr=lr, epochs=epochs, wd=wd, seed=seed)
    return f

# (e) modality gap: query-side map from query distribution onto doc region ---
def gap(eta=0.5, mode='mean', k=3, kind='lowrank', r=32, lr=3e-3, epochs=200, wd=1e-3):
    """mode='mean': t_q = norm(q + eta*(mu_docs_served - mu_q)) (mean-shift);
       mode='nn'  : t_q = norm((1-eta) q + eta*mean(top-k docs))  (amortised Rocchio, generalises to new q)."""
    def f(S, Q, prev, seed):
        top, _ = _topk(S, Q, 10)
        if mode == 'mean':
            mu_d = S['D'][np.unique(top.ravel())].mean(0)
            T = norm(Q + eta * (mu_d - Q.mean(0))[None])
        else:
            T = norm((1 - eta) * Q + eta * S['D'][top[:, :k]].mean(1))
        m = _init(prev, kind, seed, r)
        return train_targets(m, Q, T, lr=lr, epochs=epochs, bs=64, wd=wd, seed=seed)
    return f

# (f) OUT-OF-MECHANISM reference: lexical (BM25) + dense hybrid teacher, listwise distillation.
#     Needs traffic query TEXT and a lexical index (not just embeddings/top-k). Label-free.
_BM = {}
def _bm25(S):
    if 'M' in _BM: return _BM
    from sklearn.feature_extraction.text import CountVectorizer
    import scipy.sparse as sp
    corpus = {}
    for l in open(f'{D}/corpus.jsonl'):
        d = json.loads(l); corpus[d['_id']] = (d['title'] + ' ' + d['text']).strip()
    qtext = {}
    for l in open(f'{D}/queries.jsonl'):
        d = json.loads(l); qtext[d['_id']] = d['text']   # metadata field never read
    cv = CountVectorizer(stop_words='english', token_pattern=r'(?u)\b\w+\b')
    tf = cv.fit_transform([corpus[i] for i in S['doc_ids']]).tocsc().astype(np.float32)
    N = tf.shape[0]; dl = np.asarray(tf.sum(1)).ravel(); avg = dl.mean()
    df = np.asarray((tf > 0).sum(0)).ravel(); idf = np.log(1 + (N - df + 0.5) / (df + 0.5))
    k1, b = 0.9, 0.4
    tf = tf.tocoo()
    val = tf.data * (k1 + 1) / (tf.data + k1 * (1 - b + b * dl[tf.row] / avg)) * idf[tf.col]
    M = sp.csr_matrix((val, (tf.row, tf.col)), shape=tf.shape)
    _BM.update(M=M, cv=cv, qtext=qtext)
    return _BM

def bm25_scores(S, qids):
    B = _bm25(S)
    Qv = (B['cv'].transform([B['qtext'][q] for q in qids]) > 0).astype(np.float32)
    return np.asarray((Qv @ B['M'].T).todense())

def lex(w=1.0, tau_t=0.5, tau_s=0.05, K=50, side='both', kind='lowrank', r=32, lr=1e-3, epochs=20, wd=1e-3):
    """teacher over dense top-K: softmax((z(dense) + w*z(bm25))/tau_t), z = per-query standardisation."""
    def f(S, Q, prev, seed):
        # map chunk rows back to traffic ids
        idx = [int(np.where((S['Qtraf'] == q).all(1))[0][0]) for q in Q]
        qids = [S['traf_ids'][i] for i in idx]
        top, sc = _topk(S, Q, K)
        bm = np.take_along_axis(bm25_scores(S, qids), top, 1)
        z = lambda a: (a - a.mean(1, keepdims=True)) / (a.std(1, keepdims=True) + 1e-6)
        t = (z(sc) + w * z(bm)) / tau_t
        P = np.exp(t - t.max(1, keepdims=True)); P /= P.sum(1, keepdims=True)
        m = _init(prev, kind, seed, r)
        return train_listwise(m, Q, S['D'], top, P, side=side, tau=tau_s, lr=lr, epochs=epochs, wd=wd, seed=seed)
    return f
