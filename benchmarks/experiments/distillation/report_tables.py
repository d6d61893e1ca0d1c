"""Print the "All runs" table of REPORT.md from $AG_OUT/results.jsonl (one row per distill.py run,
in file order). The original exp5 table.md was written by hand-run inline code; this reproduces
its format (checked against the original results.jsonl: identical output)."""
import json, os, sys
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _paths
OUT = _paths.out_dir('distillation', create=False)


def extra(r):
    e = []
    if r['adapter'] == 'lowrank': e.append(f"rank{r['rank']}")
    if r.get('learn_scale'): e.append('learn_scale')
    if r['bs'] != 128: e.append(f"bs{r['bs']}")
    if r['qrep'] != 1: e.append(f"qrep{r['qrep']}")
    if r['w_ic'] > 0: e.append(f"IC w={r['w_ic']} KLqonly={r.get('kl_qonly', 0)}")
    return ' '.join(e)


print('| tag | inputs | side | adapter | T | K | lr | wd | extra | params | best_ep | dev NDCG@10 | test NDCG@10 | time s |')
print('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|')
for l in open(f'{OUT}/results.jsonl'):
    r = json.loads(l)
    K = 'full' if r['K'] == 0 else r['K']
    print(f"| {r['tag']} (s{r['seed']}) | {r['inputs']} | {r['side']} | {r['adapter']} | {r['T']} | {K} | {r['lr']} | {r['wd']} "
          f"| {extra(r)} | {r['nparam']} | {r['best_ep']} | {r['dev']} | {r['test']} | {r['time']} |")
