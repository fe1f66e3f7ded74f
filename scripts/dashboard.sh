#!/usr/bin/env bash
# The README's first command: install the package (editable, with the dashboard extras), then open the dashboard on the embedded default.
# It listens on localhost only (PAINT_ADDRESS=0.0.0.0 to serve a network, behind authentication: see the
# README) and browsers get error messages, never tracebacks (those go to this terminal).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e ".[dashboard]"
# --runner.postScriptGC false: Streamlit's full garbage collection after every rerun cost ~0.25 CPU-s per slider
# move with torch loaded (benchmarks/load.py measures both); Python's own generational collector still runs.
exec python3 -m streamlit run dashboard/app.py --server.headless true --browser.gatherUsageStats false \
  --server.address "${PAINT_ADDRESS:-localhost}" --client.showErrorDetails none --runner.postScriptGC false "$@"
