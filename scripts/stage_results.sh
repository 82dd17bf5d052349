#!/usr/bin/env bash
# Stage a study that runs under results/ for a commit: its journal and each trial's small records, the last
# checkpoint of each trial still in progress (so a later session resumes it with the same sweep command), and the
# report rebuilt from the records. Completed trials' checkpoints, W&B files and locks stay out of git.
#
#   bash scripts/stage_results.sh results/cifar10-parts      # then: git commit -m "..."
#
# tests/test_results.py checks what this stages: records small, no checkpoint of a completed trial, the report
# regenerating from the records.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RESULT="${1:?usage: scripts/stage_results.sh results/NAME}"
PY=.venv/bin/python
shopt -s nullglob
journals=("$RESULT"/*/optuna.journal)
[[ ${#journals[@]} -eq 1 ]] || { echo "stage_results: expected one study (*/optuna.journal) in $RESULT, found ${#journals[@]}" >&2; exit 2; }
STUDY_DIR="$(dirname "${journals[0]}")"
STUDY="$(basename "$STUDY_DIR")"
git add -f "${journals[0]}"
for f in probe.csv lesion.csv; do [[ -f "$STUDY_DIR/$f" ]] && git add -f "$STUDY_DIR/$f"; done
complete=0
for trial in "$STUDY_DIR"/trials/*/; do
    [[ -f "$trial/summary.json" ]] || continue
    for f in config.yaml metrics.jsonl summary.json wandb_run.json; do
        [[ -f "$trial/$f" ]] && git add -f "$trial/$f"
    done
    if grep -q '"status": "complete"' "$trial/summary.json"; then
        complete=$((complete + 1))
        git rm -q --cached --ignore-unmatch "$trial/last.pt" >/dev/null
    elif [[ -f "$trial/last.pt" ]]; then
        git add -f "$trial/last.pt"
    fi
done
if (( complete > 0 )); then
    rm -rf "$RESULT/report"
    $PY -m resnet_core report "$STUDY" --root "$RESULT" --out "$RESULT/report"
    git add -f "$RESULT/report"
fi
git status --short -- "$RESULT" | sed 's/^/  /'
echo "staged $STUDY: $complete complete trial(s)"
