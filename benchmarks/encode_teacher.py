"""Fill the teacher-embedding cache for a task's corpus (run once before distillation).

    python benchmarks/encode_teacher.py --config config/default.toml [--task SciFact]

Prints the encode time and docs/s; a second run prints the cached time.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=None)
    ap.add_argument("--task", default="SciFact")
    args = ap.parse_args()
    from antigravity.datasets import doc_text, load_task
    from antigravity.settings import Settings
    from antigravity.teacher import ModelTeacher

    s = Settings.load(args.config)
    ds = load_task(args.task, splits=("test",))
    texts = [doc_text(d) for d in ds.corpus.values()]
    teacher = ModelTeacher(s.teacher.name, cache_dir=s.resolved_cache_dir, batch_size=s.teacher.batch_size, precision=s.teacher.precision)
    t0 = time.perf_counter()
    vecs = teacher.encode(texts, show_progress=True)
    dt = time.perf_counter() - t0
    print(json.dumps({"teacher": teacher.name, "precision": teacher.encoder.precision, "n_docs": len(texts), "dim": int(vecs.shape[1]), "time_s": dt, "docs_per_s": len(texts) / dt}))


if __name__ == "__main__":
    main()
