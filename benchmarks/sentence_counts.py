"""Corpus sentences usable as pseudo-queries (8–60 words) per collection, with the sentence
splitter of ``antigravity.adaptation.corpus_queries`` and with the earlier one (a boundary
needed a capital or digit after the stop), which missed the lower-cased " . " sentences of
collections such as MED.

    python benchmarks/sentence_counts.py ../shared/data/{scifact,med,cacm,npl,lisa,time}
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from antigravity.adaptation.corpus_queries import _SENT

EARLIER = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")


def usable(splitter: re.Pattern, text: str) -> int:
    return sum(8 <= len(s.split()) <= 60 for s in splitter.split(text))


if __name__ == "__main__":
    print("| collection | earlier splitter | current splitter |\n| --- | --- | --- |")
    for d in sys.argv[1:]:
        texts = [json.loads(line).get("text", "") for line in open(Path(d) / "corpus.jsonl")]
        print(f"| {Path(d).name} | {sum(usable(EARLIER, t) for t in texts):,} | {sum(usable(_SENT, t) for t in texts):,} |")
