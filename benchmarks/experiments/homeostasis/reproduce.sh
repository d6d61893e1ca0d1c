#!/usr/bin/env bash
# Re-runs exp4 (homeostasis) exactly as it was run, then regenerates the REPORT.md tables.
# Grids: seed 0 on L6, in the order they were run (the built-in GRIDS for hub/gap/lex; the aniso grid
# was stopped after 9 configs; margin, prs and the second lex batch were inline JSON lists).
# Finals: seeds 0,1,2 for each dev pick (the L3 finals reuse the L6 dev picks).
# Needs $AG_EMB from ../make_embeddings.py. Output: $AG_OUT (default ../_out/homeostasis).
# Originally 3-5 of these ran at once on 2 cores; here they run one after another.
set -euo pipefail
H="$(cd "$(dirname "$0")" && pwd)"
OUT="${AG_OUT:-$H/../_out/homeostasis}"
if [ -e "$OUT/results/grid_L6.jsonl" ] || [ -e "$OUT/results/final_L6.jsonl" ] || [ -e "$OUT/results/final_L3.jsonl" ]; then
  echo "$OUT/results already has results (run.py appends): move them away first" >&2; exit 1
fi
mkdir -p "$OUT/logs"
run() { local log="$1"; shift; echo "+ python run.py $*" >&2; python "$H/run.py" "$@" | tee -a "$OUT/logs/$log"; }

# ---- grids (L6, seed 0) ----
run grid_hub.txt grid L6 hub
run grid_aniso.txt grid L6 aniso third cold '[{"lam": 0.1, "side": "both", "udef": "mean"}, {"lam": 0.1, "side": "both", "udef": "pc1"}, {"lam": 0.1, "side": "doc", "udef": "mean"}, {"lam": 0.1, "side": "doc", "udef": "pc1"}, {"lam": 0.25, "side": "both", "udef": "mean"}, {"lam": 0.25, "side": "both", "udef": "pc1"}, {"lam": 0.25, "side": "doc", "udef": "mean"}, {"lam": 0.25, "side": "doc", "udef": "pc1"}, {"lam": 0.5, "side": "both", "udef": "mean"}]'
run grid_gap.txt grid L6 gap
run grid_lex.txt grid L6 lex
run grid_lex2.txt grid L6 lex third cold '[{"w": 1.0, "tau_t": 1.0, "side": "doc"}, {"w": 0.5, "tau_t": 2.0, "side": "doc"}, {"w": 1.0, "tau_t": 2.0, "side": "doc"}]'
run grid_margin.txt grid L6 margin third cold '[{"teacher": "self", "tau_t": 0.02, "frac": 0.5, "side": "both"}, {"teacher": "self", "tau_t": 0.02, "frac": 0.5, "side": "doc"}, {"teacher": "self", "tau_t": 0.035, "frac": 1.0, "side": "both"}, {"teacher": "prf", "tau_t": 0.05, "alpha": 0.3, "frac": 1.0, "side": "both"}, {"teacher": "prf", "tau_t": 0.05, "alpha": 0.7, "frac": 1.0, "side": "both"}, {"teacher": "prf", "tau_t": 0.05, "alpha": 0.3, "frac": 1.0, "side": "query"}, {"teacher": "prf", "tau_t": 0.05, "alpha": 0.3, "frac": 1.0, "side": "doc"}]'
run grid_prs.txt grid L6 prs third cold '[{"gamma": 0.05, "gq": 0.0}, {"gamma": 0.1, "gq": 0.0}, {"gamma": 0.2, "gq": 0.0}, {"gamma": 0.1, "gq": 0.1}, {"gamma": 0.2, "gq": 0.1}, {"gamma": 0.1, "gq": 0.1, "mnn": false}]'
# ---- finals (seeds 0,1,2) ----
run final_L6.txt final L6 '{"defname": "lex", "cfg": {"w": 0.5, "tau_t": 1.0, "side": "doc"}}'
run final_L6.txt final L6 '{"defname": "gap", "cfg": {"eta": 1.0, "mode": "mean"}}'
run final_L6.txt final L6 '{"defname": "aniso", "cfg": {"lam": 0.25, "side": "both", "udef": "pc1"}}'
run final_L6.txt final L6 '{"defname": "hub", "cfg": {"beta": 0.1, "side": "doc", "mode": "all", "k": 50, "minocc": 1}}'
run final_L6.txt final L6 '{"defname": "margin", "cfg": {"teacher": "prf", "tau_t": 0.05, "alpha": 0.3, "frac": 1.0, "side": "doc"}}'
run final_L6.txt final L6 '{"defname": "prs", "cfg": {"gamma": 0.1, "gq": 0.1}}'
run final_L3.txt final L3 '{"defname": "lex", "cfg": {"w": 0.5, "tau_t": 1.0, "side": "doc"}}'
run final_L3.txt final L3 '{"defname": "aniso", "cfg": {"lam": 0.25, "side": "both", "udef": "pc1"}}'
run final_L3.txt final L3 '{"defname": "gap", "cfg": {"eta": 1.0, "mode": "mean"}}'
# ---- tables ----
python "$H/report_tables.py" | tee "$OUT/tables.md"
python "$H/bm25_ref.py" | tee "$OUT/bm25_ref.txt"
