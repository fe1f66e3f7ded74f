#!/usr/bin/env bash
# The README's first command: install the requirements, then open the dashboard on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -r requirements.txt
exec python3 -m streamlit run dashboard/app.py --server.headless true --browser.gatherUsageStats false "$@"
