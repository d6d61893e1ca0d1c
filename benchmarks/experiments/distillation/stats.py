"""Summarise 3-seed runs of a tag: mean±std test, paired t-test vs frozen student over 300 test queries."""
import json, os, sys, numpy as np, scipy.stats as ss
sys.path.insert(0,os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _paths
OUT=_paths.out_dir('distillation',create=False)   # AG_OUT (was /tmp/exp5)
tag=sys.argv[1]; base=np.load(f'{OUT}/pq/frozen_L3.npy')
rs=[json.loads(l) for l in open(f'{OUT}/results.jsonl') if json.loads(l)['tag']==tag]
rs={r['seed']:r for r in rs}
pqs=[np.load(f'{OUT}/pq/{tag}_s{s}.npy') for s in sorted(rs)]
te=np.array([rs[s]['test'] for s in sorted(rs)]); dv=np.array([rs[s]['dev'] for s in sorted(rs)])
print(f'{tag}: seeds {sorted(rs)} dev {dv.mean():.4f}±{dv.std(ddof=1) if len(dv)>1 else 0:.4f} test {te.mean():.4f}±{te.std(ddof=1) if len(te)>1 else 0:.4f}')
for s,pq in zip(sorted(rs),pqs):
    t,p=ss.ttest_rel(pq,base); print(f'  seed {s}: test {pq.mean():.4f} best_ep {rs[s]["best_ep"]} time {rs[s]["time"]}s  t={t:.2f} p={p:.2e}')
m=np.mean(pqs,0); t,p=ss.ttest_rel(m,base); print(f'  seed-averaged per-query: {m.mean():.4f} vs frozen {base.mean():.4f}: t={t:.2f} p={p:.2e}')
