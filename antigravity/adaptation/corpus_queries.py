"""Label-free pseudo-queries made from the corpus (titles, abstract sentences): traffic for
offline distillation (:mod:`antigravity.adaptation.distillation`) and extra judged texts for
the label-free gate (:func:`antigravity.adaptation.gates.judged_pseudo_texts`). A module of its
own so that both can import it without importing each other."""

from __future__ import annotations

import re

import numpy as np

#: a sentence boundary: end punctuation, whitespace, then a capital letter or a digit; or a
#: stop standing alone between spaces (" . ", the tokenised lower-case text of collections such
#: as MED, whose sentences never start with a capital)
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])|(?<=\s[.!?])\s+")


def pseudo_queries(doc_texts: dict[str, dict[str, str]], n_titles: int, n_sentences: int, seed: int, *, with_sources: bool = False):
    """Label-free pseudo-queries from the corpus ``{doc_id: {"title", "text"}}``: ``n_titles``
    titles and ``n_sentences`` abstract sentences (8-60 words), sampled in a deterministic order
    (numpy PCG64 ``seed``). Returns ``list[str]``, or with ``with_sources`` the pair
    ``(texts, doc_ids)``: the document each text was taken from (the known item)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    ids = sorted(doc_texts)
    titles = [(doc_texts[d]["title"], d) for d in ids if doc_texts[d].get("title")]
    sents = [(s, d) for d in ids for s in _SENT.split(doc_texts[d].get("text", "")) if 8 <= len(s.split()) <= 60]
    out = [titles[i] for i in rng.permutation(len(titles))[:n_titles]]
    out += [sents[i] for i in rng.permutation(len(sents))[:n_sentences]]
    texts = [t for t, _ in out]
    return (texts, [d for _, d in out]) if with_sources else texts
