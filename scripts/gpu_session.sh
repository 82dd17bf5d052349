#!/usr/bin/env bash
# The GPU session's runbook (issues 7 and 9): one step per `device` call, each well inside the 10-minute limit.
#
# Here, once (git-ignored folders that travel with `carry`):
#   mkdir -p data && cp ../shared/data/cifar10_jpeg.npz data/
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl optuna alembic colorlog sqlalchemy mako greenlet
# Then, on the device (carry: data, .whl, runs; wandb stays off there: no network):
#   bash scripts/gpu_session.sh bench          # fused bench table → runs/bench.json (issue 9's figures)
#   bash scripts/gpu_session.sh fusebench      # degradation_fast unfused vs fused, wall time (issue 9)
#   bash scripts/gpu_session.sh degradation    # issue 7, fused sweep (resumes if cut off)
#   bash scripts/gpu_session.sh ablations      # shortcuts / activation / pooling (fast variants via --set)
#   bash scripts/gpu_session.sh extras         # lesion of a trained ResNet-56, probe at init 8…110
#   bash scripts/gpu_session.sh pack           # study exports (journals, summaries, metrics) → $OUT
# Each step appends its log to $OUT/<step>.log. Every sweep resumes: a step cut off at the limit is run again.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/out}"
mkdir -p "$OUT" runs
export PYTHONUNBUFFERED=1
DATA=(--set data.name=cifar10_jpeg --set data.path=data/cifar10_jpeg.npz)
FAST=(--set schedule.unit=epoch --set schedule.total=30 --set "schedule.milestones=[15,22.5]")

setup() {
  if [ -d .whl ] && ! python3 -c "import optuna" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
  fi
  # the package itself (entry points for `sweep` and `report`), without touching the image's torch
  python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
}

ra() { python3 -m resnet_core "$@"; }

step="${1:?usage: scripts/gpu_session.sh bench|fusebench|degradation|ablations|extras|pack}"
setup
{
  echo "== $step $(date -u +%FT%TZ)"
  case "$step" in
    bench)
      ra bench --depths 20,56,110 --members 1,2,4,8 --batch-size 128 --steps 60 --out runs/bench.json ;;
    fusebench)
      # 10 epochs (lr constant, no milestones: a timing run) so that both passes fit one call
      python3 benchmarks/fused_sweep.py ablations/degradation_fast.yaml --fuse auto --root runs/fusebench \
        "${DATA[@]}" --set schedule.total=10 --set "schedule.milestones=[]" --out "$OUT/fusebench.json" ;;
    degradation)
      ra sweep ablations/degradation_fast.yaml --fuse auto --wandb off "${DATA[@]}" ;;
    ablations)
      ra sweep ablations/shortcuts.yaml --fuse auto --wandb off "${DATA[@]}" "${FAST[@]}"
      ra sweep ablations/activation.yaml --fuse auto --wandb off "${DATA[@]}" "${FAST[@]}"
      ra sweep ablations/pooling.yaml --fuse auto --wandb off "${DATA[@]}" "${FAST[@]}" ;;
    extras)
      ckpt=$(ls runs/degradation-fast/trials/depth-56_shortcut-identity-s0/best.pt)
      ra lesion "$ckpt" --out "$OUT/lesion_resnet56.csv"
      ra probe --depths 8,20,32,44,56,110 "${DATA[@]}" | tee "$OUT/probe.txt" ;;
    pack)
      tar czf "$OUT/studies.tgz" --exclude='*.pt' --exclude='wandb' runs/*/optuna.journal runs/*/trials \
        runs/bench.json 2>/dev/null || true
      ls -la "$OUT" ;;
    *) echo "unknown step $step"; exit 2 ;;
  esac
} 2>&1 | tee -a "$OUT/$step.log"
