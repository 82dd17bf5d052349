#!/usr/bin/env bash
# Open a study in optuna-dashboard and take headless-Chromium screenshots of its pages, the way a user looks at it.
#
#   bash scripts/dashboard_screenshot.sh runs/quickstart [OUT_DIR]     # default OUT_DIR: docs/dashboard
#
# Writes OUT_DIR/{study,analytics,trials}.png and OUT_DIR/api.json (the dashboard's own JSON answers for the study
# and its parameter importances), so the pictures can be checked against numbers. Needs chromium (apt-get install
# chromium); the dashboard is installed with the project. The server listens on 127.0.0.1 only and is stopped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
STUDY_DIR="${1:?usage: dashboard_screenshot.sh STUDY_DIR [OUT_DIR]}"
OUT="${2:-docs/dashboard}"
JOURNAL="$STUDY_DIR/optuna.journal"
[[ -f "$JOURNAL" ]] || { echo "error: no $JOURNAL (run the sweep first)" >&2; exit 2; }
CHROME="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
[[ -n "$CHROME" ]] || { echo "error: no chromium on PATH (apt-get install chromium)" >&2; exit 2; }
mkdir -p "$OUT"
PORT="$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
.venv/bin/optuna-dashboard --host 127.0.0.1 --port "$PORT" --quiet "$JOURNAL" >"$OUT/dashboard.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 100); do curl -fs "$BASE/api/studies" >/dev/null 2>&1 && break; sleep 0.2; done
ID="$(curl -fs "$BASE/api/studies" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["study_summaries"][0]["study_id"])')"
{
    printf '{"study": '; curl -fs "$BASE/api/studies/$ID?after=0"
    printf ', "param_importances": '; curl -fs "$BASE/api/studies/$ID/param_importances"
    printf '}\n'
} >"$OUT/api.json"
shot() {   # page file height: the SPA renders with JavaScript; give it virtual time to fetch and draw the plots
    "$CHROME" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,"$3" \
        --virtual-time-budget=20000 --screenshot="$OUT/$2" "$BASE/dashboard/studies/$ID$1" >/dev/null 2>&1
}
shot "" study.png 2200
shot "/analytics" analytics.png 2600
shot "/trials" trials.png 1400
ls -la "$OUT"
