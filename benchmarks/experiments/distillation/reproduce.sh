#!/usr/bin/env bash
# Re-runs exp5 (distillation) exactly as it was run, then prints every number of REPORT.md.
# Needs $AG_EMB from ../make_embeddings.py. Output: $AG_OUT (default ../_out/distillation).
# Sequential here (JOBS=1); the original ran several distill.py jobs at once: JOBS=3 bash reproduce.sh
set -euo pipefail
H="$(cd "$(dirname "$0")" && pwd)"
OUT="${AG_OUT:-$H/../_out/distillation}"
JOBS="${JOBS:-1}"
if [ -e "$OUT/results.jsonl" ]; then
  echo "$OUT/results.jsonl exists (distill.py appends): move it away first" >&2; exit 1
fi
mkdir -p "$OUT"
python "$H/prep_pseudo.py" | tee "$OUT/prep.log"                   # pseudo.json, L{3,6}_{sent,title}.npy
python "$H/baselines.py" | tee "$OUT/baselines.txt"                # frozen + ridge + fusion rows; pq/frozen_L3.npy
python "$H/run_sweeps.py" --jobs "$JOBS" "$H"/sweeps/sweep1.txt "$H"/sweeps/sweep2.txt \
  "$H"/sweeps/sweep3.txt "$H"/sweeps/sweep4.txt "$H"/sweeps/seeds.txt
for tag in BEST_both_full QONLY_full DONLY_full; do python "$H/stats.py" "$tag"; done | tee "$OUT/stats.txt"
python "$H/report_tables.py" | tee "$OUT/table.md"                 # the "All runs" table
