"""Resident memory (RSS, MiB from /proc/self/status) of the teacher: loaded, released, and
in an engine switched hybrid -> baseline.

    python benchmarks/teacher_memory.py --teacher all-mpnet-base-v2

Steps: (1) process with the student engine only; (2) a hybrid cycle loads the teacher;
(3) ``set_mode("baseline")`` releases it; (4) a TeacherDistillationHelper loads the teacher
again and (5) ``release()`` frees it. Texts are fresh (uncached) so the model really runs.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import json
import time


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--student", default="all-MiniLM-L6-v2")
    ap.add_argument("--teacher", default="all-mpnet-base-v2")
    args = ap.parse_args()

    from antigravity import AntigravityEngine
    from antigravity.datasets import doc_text, load_task

    ds = load_task("SciFact", splits=("train",))
    docs = list(ds.corpus.items())[:300]
    nonce = time.time_ns()  # fresh texts: the teacher must really run (no embedding-cache hits)
    queries = [f"{q} (probe {nonce})" for q in list(ds.queries.values())[:150]]
    out = {"student": args.student, "teacher": args.teacher}
    eng = AntigravityEngine(store__location=":memory:", student__name=args.student, teacher__name=args.teacher, gate__enabled=False, adaptation__min_signals=1)
    eng.ingest([{"_id": d, **v} for d, v in docs])
    eng.search_batch(queries)
    gc.collect()
    out["rss_student_engine_mib"] = rss_mib()
    eng.set_mode("hybrid", teacher_weight=0.5)
    eng.run_sedimentation_cycle()
    out["teacher_loaded_after_hybrid_cycle"] = eng.stats()["teacher_loaded"] and eng.teacher_helper.teacher.loaded
    gc.collect()
    out["rss_hybrid_teacher_loaded_mib"] = rss_mib()
    eng.set_mode("baseline")
    gc.collect()
    out["teacher_loaded_after_baseline_switch"] = eng.stats()["teacher_loaded"]
    out["rss_after_switch_to_baseline_mib"] = rss_mib()
    helper = eng.teacher_helper
    helper.get_teacher_embeddings([f"fresh probe text number {i} {nonce} {doc_text(v)[:200]}" for i, (_, v) in enumerate(docs[:64])], cache=False)
    gc.collect()
    out["rss_helper_loaded_mib"] = rss_mib()
    helper.release()
    gc.collect()
    out["helper_loaded_after_release"] = helper.loaded
    out["rss_after_release_mib"] = rss_mib()
    print(json.dumps(out))
    eng.close()


if __name__ == "__main__":
    main()
