#!/usr/bin/env bash
# The README's first command: install the package (editable, with the dashboard extras), then open the dashboard on the embedded default.
# It listens on localhost only (PAINT_ADDRESS=0.0.0.0 to serve a network, behind authentication: see the
# README) and browsers get error messages, never tracebacks (those go to this terminal).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e ".[dashboard]"
# --runner.postScriptGC false: Streamlit's full garbage collection after every rerun cost ~0.25 CPU-s per slider
# move with torch loaded (benchmarks/load.py measures both); Python's own generational collector still runs.
# --server.fileWatcherType none: after every rerun Streamlit's source watcher walks every loaded module's path
# (thousands with torch), ~30% of the server's time per move under load; a served app does not reload its code.
exec python3 -m streamlit run dashboard/app.py --server.headless true --browser.gatherUsageStats false \
  --server.address "${PAINT_ADDRESS:-localhost}" --client.showErrorDetails none --runner.postScriptGC false \
  --server.fileWatcherType none "$@"
