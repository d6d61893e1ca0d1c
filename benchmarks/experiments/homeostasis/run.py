"""Usage:
  python run.py grid  L6 <defname> [chunk_mode] [warm] ['<json list of cfgs>']   # seed-0 grid, appends to $AG_OUT/results/grid_<model>.jsonl
  python run.py final L6 '<json config>'                    # seeds 0,1,2 for one config -> $AG_OUT/results/final_<model>.jsonl
(a 6th argument, a JSON list of configs, replaces the built-in grid; argv[5] must then be given: 'warm' or anything else.)
"""
import sys, json, time, numpy as np
from scipy.stats import ttest_rel
from common import *
import defs

GRIDS = {
    'hub': [dict(beta=b, minocc=m, side=s, mode='hub') for b in (0.05, 0.1, 0.2) for m in (3, 5) for s in ('doc', 'both')]
           + [dict(beta=b, side=s, mode='all', k=50, minocc=1) for b in (0.05, 0.1) for s in ('doc', 'both')],
    'aniso': [dict(lam=l, side=s, udef=u) for l in (0.1, 0.25, 0.5, 1.0) for s in ('both', 'doc') for u in ('mean', 'pc1')],
    'margin': [dict(teacher='self', tau_t=t, frac=f, side=s) for t in (0.02, 0.035) for f in (0.5, 1.0) for s in ('both', 'doc')]
              + [dict(teacher='prf', tau_t=t, alpha=a, frac=1.0, side=s) for t in (0.02, 0.05) for a in (0.3, 0.7) for s in ('both', 'doc', 'query')],
    'prs': [dict(gamma=g, gq=q, mnn=mn) for g in (0.05, 0.1, 0.2) for q in (0.0, 0.1) for mn in (True, False)],
    'lex': [dict(w=w, tau_t=t, side=s) for w in (0.5, 1.0) for t in (0.3, 1.0) for s in ('both', 'doc')],
    'gap': [dict(eta=e, mode='mean') for e in (0.25, 0.5, 1.0)] + [dict(eta=e, mode='nn', k=k) for e in (0.1, 0.2, 0.3) for k in (1, 3, 10)],
}

def side_of(defname, cfg):
    if defname == 'gap': return 'query'
    return cfg.get('side', 'both')

def run_one(S, defname, cfg, seed, chunk_mode='third', warm=False):
    fn = getattr(defs, defname)(**cfg)
    return run_cycles(S, fn, seed, chunk_mode=chunk_mode, warm=warm, side=side_of(defname, cfg))

if __name__ == '__main__':
    mode, model = sys.argv[1], sys.argv[2]
    S = load(model)
    RES = os.path.join(OUT, 'results')   # was ./results under /tmp/exp4
    os.makedirs(RES, exist_ok=True)
    if mode == 'grid':
        defname = sys.argv[3]
        chunk_mode = sys.argv[4] if len(sys.argv) > 4 else 'third'
        warm = len(sys.argv) > 5 and sys.argv[5] == 'warm'
        grid = GRIDS[defname] if len(sys.argv) <= 6 else json.loads(sys.argv[6])
        for cfg in grid:
            t = time.time()
            R = run_one(S, defname, cfg, 0, chunk_mode, warm)
            last = R['rows'][-1]
            rec = dict(model=model, defname=defname, cfg=cfg, chunk=chunk_mode, warm=warm, rows=R['rows'],
                       final_dev=R['final_dev'], final_test=R['final_test'], frozen_test=R['rows'][0]['test'],
                       ungated_c3_dev=last['dev'], ungated_c3_test=last['test'],
                       best_ungated_dev=max(r['dev'] for r in R['rows'][1:]))
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rec.items() if k != 'rows'}),
                  ' cyc:', [(round(r['dev'], 4), round(r['test'], 4), r['promoted']) for r in R['rows'][1:]],
                  f'{time.time()-t:.0f}s', flush=True)
            with open(f'{RES}/grid_{model}.jsonl', 'a') as fh: fh.write(json.dumps(rec) + '\n')
    else:
        spec = json.loads(sys.argv[3])
        defname, cfg = spec['defname'], spec['cfg']
        chunk_mode, warm = spec.get('chunk', 'third'), spec.get('warm', False)
        out = dict(model=model, defname=defname, cfg=cfg, chunk=chunk_mode, warm=warm, seeds=[])
        pqs = []
        for seed in (0, 1, 2):
            R = run_one(S, defname, cfg, seed, chunk_mode, warm)
            p = ttest_rel(R['pq'], R['pq0']).pvalue if not np.allclose(R['pq'], R['pq0']) else 1.0
            m = R['model']
            out['seeds'].append(dict(seed=seed, rows=R['rows'], final_dev=R['final_dev'], final_test=R['final_test'],
                                     p=float(p), nparams=nparams(m) if m is not None else 0))
            pqs.append(R['pq']); pq0 = R['pq0']
            print(seed, [(round(r['dev'], 4), round(r['test'], 4), r['promoted'], round(r['secs'], 1)) for r in R['rows']],
                  'final test', round(R['final_test'], 4), 'p', p, flush=True)
        ft = np.array([s['final_test'] for s in out['seeds']])
        out['test_mean'], out['test_std'] = float(ft.mean()), float(ft.std(ddof=1))
        out['frozen_test'] = float(pq0.mean())
        mp = np.mean(pqs, 0)
        out['p_seedavg'] = float(ttest_rel(mp, pq0).pvalue) if not np.allclose(mp, pq0) else 1.0
        print(json.dumps({k: v for k, v in out.items() if k != 'seeds'}), flush=True)
        with open(f'{RES}/final_{model}.jsonl', 'a') as fh: fh.write(json.dumps(out) + '\n')
