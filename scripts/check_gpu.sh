#!/usr/bin/env bash
# GPU acceptance checks of the engine's fast path (issue 14): one PASS/FAIL line per check, under 5 minutes on one
# GPU: graphed vs eager loss curves (bf16, 200 steps), resume under the graph == uninterrupted, fused G=4 graphed ==
# 4 solo runs (fp64), a diverging member isolated, and the `bench --members 1,2,4,8` table for ResNet-20/56/110.
#
#   bash scripts/setup.sh && bash scripts/check_gpu.sh      # from a fresh clone
#   bash scripts/check_gpu.sh --only resume_graph,fused_graph --no-bench
#
# Uses $PYTHON if set, else .venv/bin/python when scripts/setup.sh made one, else python3. Exit: 0 all passed, 1 a check failed,
# 2 no CUDA device here (nothing run). Details: benchmarks/check_gpu.py.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
PY="${PYTHON:-python3}"
[[ -z "${PYTHON:-}" && -x .venv/bin/python ]] && PY=.venv/bin/python
export PYTHONUNBUFFERED=1
exec "$PY" benchmarks/check_gpu.py "$@"
