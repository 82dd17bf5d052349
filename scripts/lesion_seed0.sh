#!/usr/bin/env bash
# Lesion the trained nets of a study: seed 0 of each cell, its completed run (a retried trial's folder ends in -rN).
# Each block is replaced by its shortcut (the identity where the shapes match, in a plain net too), so plain and
# residual nets are lesioned on equal footing (Veit et al. 2016). One single-threaded process per checkpoint, in
# parallel; their tables are joined into STUDY_DIR/lesion.csv, which the report reads.
#
#   bash scripts/lesion_seed0.sh results/cifar10-fig6/fig6-cpu                 # every cell's seed 0
#   bash scripts/lesion_seed0.sh runs/degradation-cpu depth-56_shortcut-none   # only these cells (folder names)
#
# A cell whose seed 0 has not completed is skipped with a line; none completed is an error (exit 2).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
STUDY_DIR="${1:?usage: scripts/lesion_seed0.sh STUDY_DIR [CELL_FOLDER ...]}"
shift
PY="${PY:-.venv/bin/python}"
shopt -s nullglob
[[ -d "$STUDY_DIR/trials" ]] || { echo "lesion_seed0: no trials/ folder in $STUDY_DIR" >&2; exit 2; }
cells=("$@")
if [[ ${#cells[@]} -eq 0 ]]; then
    for t in "$STUDY_DIR"/trials/*-s0/; do cells+=("$(basename "${t%-s0/}")"); done
fi
ckpts=()
for cell in "${cells[@]}"; do
    found=""
    for t in "$STUDY_DIR/trials/$cell-s0" "$STUDY_DIR"/trials/"$cell"-s0-r*; do
        if [[ -f "$t/last.pt" && -f "$t/summary.json" ]] && grep -q '"status": "complete"' "$t/summary.json"; then
            found="$t/last.pt"
            break
        fi
    done
    if [[ -n "$found" ]]; then
        ckpts+=("$found")
    else
        echo "lesion_seed0: $cell: no completed seed-0 run with a last.pt; skipped" >&2
    fi
done
[[ ${#ckpts[@]} -gt 0 ]] || { echo "lesion_seed0: no completed seed-0 run in $STUDY_DIR" >&2; exit 2; }
parts=()
pids=()
for i in "${!ckpts[@]}"; do
    parts+=("$STUDY_DIR/lesion.part$i.csv")
    OMP_NUM_THREADS=1 $PY -m resnet_core lesion --device cpu --out "${parts[$i]}" "${ckpts[$i]}" &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done   # a failed lesion fails the script
{ head -n 1 "${parts[0]}"; for f in "${parts[@]}"; do tail -n +2 "$f"; done; } > "$STUDY_DIR/lesion.csv.tmp"
mv "$STUDY_DIR/lesion.csv.tmp" "$STUDY_DIR/lesion.csv"
rm -f "${parts[@]}"
echo "lesion_seed0: ${#ckpts[@]} checkpoint(s) → $STUDY_DIR/lesion.csv"
