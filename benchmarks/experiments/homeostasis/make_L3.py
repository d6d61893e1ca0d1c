# L3 (paraphrase-MiniLM-L3-v2) embeddings -> $AG_OUT/emb/ (was /tmp/exp4/emb/).
# Kept for the record only. The original version ran the ONNX file through onnxruntime and took
# output [0] (the input_ids echo, not the embedding); it crashed (see REPORT / logs_L3), so nothing
# was ever written to /tmp/exp4/emb and no exp4 number uses this script's output. The L3 vectors the
# exp4 L3 finals used are $AG_EMB/L3_{corpus,queries}.npy from ../make_embeddings.py.
# Ported to the product encoder (paraphrase-MiniLM-L3-v2 from the registry = the ONNX model's pooled
# output to ~1e-7), so it now produces the same arrays as make_embeddings.py, in another folder.
import json, numpy as np, os, sys, time
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _paths
from antigravity.encoders.model import Encoder
D, E = _paths.data_dir(), _paths.emb_dir()
ids = json.load(open(f'{E}/ids.json'))
corpus = {}
for l in open(f'{D}/corpus.jsonl'):
    d = json.loads(l); corpus[d['_id']] = (d['title'] + ' ' + d['text']).strip()
qt = {}
for l in open(f'{D}/queries.jsonl'):
    d = json.loads(l); qt[d['_id']] = d['text']   # metadata field never read
enc = Encoder('paraphrase-MiniLM-L3-v2', cache_dir=os.path.expanduser('~/.antigravity/cache')).encode
out = os.path.join(_paths.out_dir('homeostasis'), 'emb')
os.makedirs(out, exist_ok=True)
t = time.time()
np.save(f'{out}/L3_queries.npy', enc([qt[q] for q in ids['query_ids']]))
np.save(f'{out}/L3_corpus.npy', enc([corpus[d] for d in ids['doc_ids']]))
print('L3 done', time.time() - t, flush=True)
