import json, sys, collections, os
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _paths
RES = os.path.join(_paths.out_dir('homeostasis', create=False), 'results')   # AG_OUT/results (was ./results)
def fmt(x): return f'{x:.4f}'
for model in ('L6', 'L3'):
    try: G = [json.loads(l) for l in open(f'{RES}/grid_{model}.jsonl')]
    except FileNotFoundError: G = []
    by = collections.OrderedDict()
    seen = set()
    for g in G:
        key = (g['defname'], json.dumps(g['cfg'], sort_keys=True))
        if key in seen: continue
        seen.add(key); by.setdefault(g['defname'], []).append(g)
    for d, rows in by.items():
        print(f'\n#### {model} — definition `{d}` (seed 0, 3 cycles x 1/3 traffic, gated)\n')
        print('| config | gated dev | gated test | Δtest vs frozen | ungated cyc3 dev | ungated cyc3 test |')
        print('|---|---|---|---|---|---|')
        best = max(rows, key=lambda r: (round(r['final_dev'], 6), -len(json.dumps(r['cfg']))))
        for r in rows:
            star = ' **(dev pick)**' if r is best else ''
            print(f"| `{json.dumps(r['cfg'])}`{star} | {fmt(r['final_dev'])} | {fmt(r['final_test'])} | {r['final_test']-r['frozen_test']:+.4f} | {fmt(r['ungated_c3_dev'])} | {fmt(r['ungated_c3_test'])} |")
    try: F = [json.loads(l) for l in open(f'{RES}/final_{model}.jsonl')]
    except FileNotFoundError: continue
    print(f'\n#### {model} — finals (seeds 0,1,2)\n')
    print('| def | config | test mean±std | Δ vs frozen | p (seed-avg per-query) | per-seed p | params | per-cycle (dev/test/promoted/secs) seed0 |')
    print('|---|---|---|---|---|---|---|---|')
    for f in F:
        s0 = f['seeds'][0]['rows']
        cyc = '; '.join(f"c{r['cycle']}:{r['dev']:.4f}/{r['test']:.4f}/{'P' if r['promoted'] else 'R'}/{r['secs']:.1f}s" for r in s0)
        print(f"| {f['defname']} | `{json.dumps(f['cfg'])}` | {f['test_mean']:.4f}±{f['test_std']:.4f} | {f['test_mean']-f['frozen_test']:+.4f} | {f['p_seedavg']:.3g} | {', '.join('%.2g' % s['p'] for s in f['seeds'])} | {max(s['nparams'] for s in f['seeds'])} | {cyc} |")
