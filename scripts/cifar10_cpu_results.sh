#!/usr/bin/env bash
# Reproduce results/cifar10-cpu/: the degradation study on real CIFAR-10 within a CPU budget (about 75 minutes on 2
# cores with native bf16), its probes and lesions, the report, and the small run records committed beside it.
#
#   bash scripts/cifar10_cpu_results.sh            # needs data/cifar10_jpeg.npz (or DATA=cifar10 for torchvision's)
#   STEP=report bash scripts/cifar10_cpu_results.sh  # only the probe/lesion/report/copy steps, after the sweep
#
# The run folder is runs/ (ignored by git); results/cifar10-cpu/ gets config.yaml, metrics.jsonl and summary.json
# of every trial plus the study's journal, probe.csv and lesion.csv (no checkpoints, no W&B files), and report/.
# tests/test_results.py regenerates the tables and verdicts from those records and compares them with report/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin/python
DATA="${DATA:-cifar10_jpeg}"
STUDY=degradation-cpu
RUNS="${RUNS:-runs}"
OUT=results/cifar10-cpu

if [[ "${STEP:-all}" == all ]]; then

    WANDB_MODE=offline $PY -m resnet_core sweep ablations/degradation_cpu.yaml --set "data.name=$DATA" --root "$RUNS"
fi
STUDY_DIR="$RUNS/$STUDY"
# gradient norm at initialisation, plain vs residual, depths 8-110 (He et al. 2016's depths; 3 inits each)
$PY -m resnet_core probe --depths 8,20,32,44,56,110 --device cpu --out "$STUDY_DIR/probe.csv"
# lesions of the trained nets (seed 0 of each cell, its completed run), each block replaced by its shortcut
bash scripts/lesion_seed0.sh "$STUDY_DIR" depth-20_shortcut-none depth-20_shortcut-identity depth-56_shortcut-none \
    depth-56_shortcut-identity

rm -rf "$OUT/$STUDY"
mkdir -p "$OUT/$STUDY/trials"
cp "$STUDY_DIR/optuna.journal" "$OUT/$STUDY/"
for f in probe.csv lesion.csv; do [[ -f "$STUDY_DIR/$f" ]] && cp "$STUDY_DIR/$f" "$OUT/$STUDY/"; done
for trial in "$STUDY_DIR"/trials/*/; do
    name="$(basename "$trial")"
    mkdir -p "$OUT/$STUDY/trials/$name"
    for f in config.yaml metrics.jsonl summary.json; do
        [[ -f "$trial/$f" ]] && cp "$trial/$f" "$OUT/$STUDY/trials/$name/"
    done
done
rm -rf "$OUT/report"
$PY -m resnet_core report "$STUDY" --root "$OUT" --out "$OUT/report"
du -sh "$OUT"
