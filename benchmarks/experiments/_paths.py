"""Paths for the exploration scripts under benchmarks/experiments/ (not part of the product).

Every location comes from an environment variable, with a default relative to this repo:

  AG_DATA  SciFact folder (corpus.jsonl, queries.jsonl, qrels/{train,test}.tsv)
           default: <repo>/../shared/data/scifact
  AG_EMB   embedding matrices written by make_embeddings.py
           (ids.json, {L6,L3}_{corpus,queries}.npy)
           default: <repo>/benchmarks/experiments/_emb
  AG_OUT   output folder of ONE experiment (results, logs, derived arrays)
           default: <repo>/benchmarks/experiments/_out/<experiment>
"""
import os
from pathlib import Path

EXPERIMENTS = Path(__file__).resolve().parent      # <repo>/benchmarks/experiments
REPO = EXPERIMENTS.parents[1]                        # <repo>


def _env(name, default):
    v = os.environ.get(name)
    return os.path.abspath(os.path.expanduser(v)) if v else str(default)


def data_dir():
    return _env('AG_DATA', REPO.parent / 'shared' / 'data' / 'scifact')


def emb_dir(create=False):
    p = _env('AG_EMB', EXPERIMENTS / '_emb')
    if create:
        os.makedirs(p, exist_ok=True)
    elif not os.path.exists(os.path.join(p, 'ids.json')):
        raise FileNotFoundError(f'{p}/ids.json not found: run  python benchmarks/experiments/make_embeddings.py'
                                f'  (or point AG_EMB at a folder that has it)')
    return p


def out_dir(experiment, create=True):
    p = _env('AG_OUT', EXPERIMENTS / '_out' / experiment)
    if create:
        os.makedirs(p, exist_ok=True)
    return p
