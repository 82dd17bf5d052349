#!/usr/bin/env bash
# Create/refresh the project's virtual environment in <repo>/.venv.
#
# Idempotent: a stamp file inside .venv records a hash of everything that
# decides what gets installed (pyproject.toml, the pinned torch versions, this
# script, the Python version, the repo path).  When the stamp matches and the
# key packages are importable, the script returns in well under a second.
#
#   bash scripts/setup.sh            # create or update .venv
#   FORCE=1 bash scripts/setup.sh    # reinstall even if the stamp matches
#   PYTHON=python3.12 bash scripts/setup.sh   # pick the base interpreter
#   INSTALLER=pip bash scripts/setup.sh      # install with pip alone
#
# The installer is uv (put into the venv with pip; it installs torch's 3 GiB of
# CUDA libraries in about 15 s where pip takes about 60 s), given the index,
# find-links and constraint settings of pip's configuration, and compiling the
# bytecode as pip does (without it every worker a test spawns with -B compiles
# torch's Python files again: the suite took 15 min instead of 9); if uv cannot
# be had or fails, pip installs everything.  The output goes to .venv/setup.log;
# its tail is printed on failure.
set -euo pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
ROOT="$(cd "$(dirname "$SELF")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
VPY="$VENV/bin/python"
BASE_PY="${PYTHON:-python3}"
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
EXTRAS="dev,postgres"
STAMP="$VENV/.resnet-ablate-setup.stamp"
INSTALLER="${INSTALLER:-uv}"
case "$INSTALLER" in
    uv|pip) ;;
    *) echo "[setup] INSTALLER=$INSTALLER: expected uv or pip" >&2; exit 2 ;;
esac
LOG="$VENV/setup.log"

say() { printf '[setup] %s\n' "$*"; }

compute_key() {
    {
        cat pyproject.toml
        printf '%s\n' "${TORCH_PINS[@]}" "$EXTRAS" "$ROOT"
        cat "$SELF"
        "$VPY" -c 'import sys; print(sys.version)'
    } | sha256sum | cut -d' ' -f1
}

# Fast path: stamp matches and the important modules can be found (no import,
# so this stays cheap even with torch installed).
if [[ -z "${FORCE:-}" && -x "$VPY" && -f "$STAMP" ]]; then
    if [[ "$(cat "$STAMP")" == "$(compute_key)" ]] && "$VPY" - <<'EOF' 2>/dev/null
import importlib.util, sys
mods = ["torch", "torchvision", "optuna", "plotly", "scipy", "shtab", "psycopg2", "pytest", "resnet_core"]
sys.exit(0 if all(importlib.util.find_spec(m) for m in mods) else 1)
EOF
    then
        say "up to date ($VENV)"
        exit 0
    fi
fi

run_logged() {
    # Run a command with its output appended to the log; show the tail on error.
    if ! "$@" >>"$LOG" 2>&1; then
        echo "[setup] FAILED: $*" >&2
        echo "[setup] last lines of $LOG:" >&2
        tail -n 40 "$LOG" >&2
        exit 1
    fi
}

if [[ ! -x "$VPY" ]]; then
    say "creating virtualenv $VENV with $("$BASE_PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
    rm -rf "$VENV"
    "$BASE_PY" -m venv "$VENV"
fi
rm -f "$STAMP"
: >"$LOG"

PIP=("$VPY" -m pip --disable-pip-version-check)

# pip's configuration (files and PIP_* variables) as uv's flags: uv reads neither.
uv_flags() {
    "${PIP[@]}" config list 2>/dev/null | "$VPY" -c '
import shlex, sys
seen = {}
for line in sys.stdin:                       # global.find-links=\x27/opt/wheels\x27 or :env:.find-links=...
    key, _, value = line.strip().partition("=")
    name = key.rsplit(".", 1)[-1]
    if key.startswith(":env:") or name not in seen:
        seen[name] = shlex.split(value)[0] if value else ""
flag = {"index-url": "--index-url", "extra-index-url": "--extra-index-url", "find-links": "--find-links",
        "constraint": "--constraint"}
for name, option in flag.items():
    for value in seen.get(name, "").split():
        print(option); print(value)
'
}

install_with_uv() {
    "${PIP[@]}" install uv >>"$LOG" 2>&1 || return 1
    local flags
    mapfile -t flags < <(uv_flags)
    "$VENV/bin/uv" pip install --python "$VPY" --compile-bytecode --index-strategy unsafe-best-match "${flags[@]}" \
        "${TORCH_PINS[@]}" -e ".[$EXTRAS]" >>"$LOG" 2>&1
}

t0=$SECONDS
use_pip=1
if [[ "$INSTALLER" == uv ]]; then
    say "installing ${TORCH_PINS[*]} and the project ('.[$EXTRAS]', editable) with uv"
    if install_with_uv; then
        use_pip=""
    else
        say "uv could not install them (see $LOG); installing with pip (the slow step on a fresh venv)"
    fi
else
    say "installing ${TORCH_PINS[*]} and the project with pip (INSTALLER=pip)"
fi
if [[ -n "$use_pip" ]]; then
    run_logged "${PIP[@]}" install "${TORCH_PINS[@]}"
    run_logged "${PIP[@]}" install -e ".[$EXTRAS]"
fi

say "checking imports"
# Third-party imports only: a bug in the project's own code is for the tests
# to report, not for setup.  The project itself just has to be findable.
run_logged "$VPY" -c 'import importlib.util, torch, torchvision, optuna, psycopg2, pytest; assert importlib.util.find_spec("resnet_core"), "resnet_core not installed"; print("torch", torch.__version__, "optuna", optuna.__version__)'

compute_key >"$STAMP"
say "done in $((SECONDS - t0))s ($(tail -n 1 "$LOG"))"
