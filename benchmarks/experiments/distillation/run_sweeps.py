"""Run distill.py once per argument line of one or more sweep files (sweeps/*.txt).

    python run_sweeps.py sweeps/sweep1.txt sweeps/sweep2.txt ... [--jobs N] [--dry-run]

Each non-blank, non-# line is the exact distill.py argument list of one recorded run; `{OUT}` is
replaced by $AG_OUT (default <repo>/benchmarks/experiments/_out/distillation). Each run appends one
record to $AG_OUT/results.jsonl and writes $AG_OUT/pq/<tag>_s<seed>.npy; its stdout goes to
$AG_OUT/logs/<tag>_s<seed>.log. The original sweeps ran several jobs at once (--jobs); the order of
lines in results.jsonl then follows completion order, which only changes the row order of the table.
"""
import argparse, os, shlex, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _paths

HERE = os.path.dirname(os.path.abspath(__file__))


def lines(path, out):
    for l in open(path):
        l = l.strip()
        if l and not l.startswith('#'):
            yield shlex.split(l.replace('{OUT}', out))


def name_of(args):
    tag = args[args.index('--tag') + 1] if '--tag' in args else 'run'
    seed = args[args.index('--seed') + 1] if '--seed' in args else '0'
    return f'{tag}_s{seed}'


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('files', nargs='+')
    ap.add_argument('--jobs', type=int, default=1)
    ap.add_argument('--dry-run', action='store_true')
    a = ap.parse_args()
    out = _paths.out_dir('distillation', create=not a.dry_run)
    runs = [args for f in a.files for args in lines(f, out)]
    cmds = [[sys.executable, os.path.join(HERE, 'distill.py')] + args for args in runs]
    if a.dry_run:
        for c in cmds:
            print(shlex.join(c))
        return
    os.makedirs(os.path.join(out, 'logs'), exist_ok=True)

    def go(c):
        t = time.time()
        log = os.path.join(out, 'logs', name_of(c) + '.log')
        with open(log, 'w') as fh:
            rc = subprocess.call(c, stdout=fh, stderr=subprocess.STDOUT)
        print(f'{name_of(c)}: rc={rc} {time.time() - t:.0f}s  ({log})', flush=True)
        return rc

    with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as ex:
        rcs = list(ex.map(go, cmds))
    sys.exit(1 if any(rcs) else 0)


if __name__ == '__main__':
    main()
