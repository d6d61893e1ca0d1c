# Build label-free pseudo-queries from the corpus (sentences + titles) and encode them with L3 and L6.
# Port: paths via AG_DATA / AG_EMB / AG_OUT (was /work/shared/data/scifact, /tmp/emb, /tmp/exp5), and both
# models now go through the product Encoder (antigravity.encoders.model.Encoder, cache ~/.antigravity/cache).
# Originally L3 ran through onnxruntime (output '461', the pooled embedding, L6 tokenizer, max_length 128)
# and L6 through SentenceTransformer(normalize_embeddings=True); the registry models give the same vectors
# (~1e-7). The original also re-encoded L3 queries/corpus into /tmp/exp5 to work around the broken
# /tmp/emb L3 arrays; those now come from ../make_embeddings.py ($AG_EMB), so that step is gone.
import json, numpy as np, re, os, time, glob, random, sys
os.environ.setdefault("HF_HUB_OFFLINE","1")
import torch; torch.set_num_threads(1)
sys.path.insert(0,os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _paths
D=_paths.data_dir(); E=_paths.emb_dir(); OUT=_paths.out_dir('distillation')
corpus=[json.loads(l) for l in open(f'{D}/corpus.jsonl')]
ids=json.load(open(f'{E}/ids.json')); did2i={d:i for i,d in enumerate(ids['doc_ids'])}
rng=random.Random(0)
sent_txt,sent_doc,title_txt,title_doc=[],[],[],[]
for d in corpus:
    i=did2i[d['_id']]
    if d['title'].strip(): title_txt.append(d['title'].strip()); title_doc.append(i)
    ss=[s.strip() for s in re.split(r'(?<=[.!?])\s+', d['text']) if 40<=len(s.strip())<=300]
    rng.shuffle(ss)
    for s in ss[:2]: sent_txt.append(s); sent_doc.append(i)
print(len(sent_txt),len(title_txt),flush=True)
json.dump({'sent_txt':sent_txt,'sent_doc':sent_doc,'title_txt':title_txt,'title_doc':title_doc},open(f'{OUT}/pseudo.json','w'))
from antigravity.encoders.model import Encoder
cache=os.path.expanduser('~/.antigravity/cache')
e3=Encoder('paraphrase-MiniLM-L3-v2',cache_dir=cache)
e6=Encoder('all-MiniLM-L6-v2',cache_dir=cache)
for name,txt in [('title',title_txt),('sent',sent_txt)]:
    t=time.time(); np.save(f'{OUT}/L3_{name}.npy',e3.encode(txt)); print('L3',name,time.time()-t,flush=True)
    t=time.time(); np.save(f'{OUT}/L6_{name}.npy',e6.encode(txt)); print('L6',name,time.time()-t,flush=True)
