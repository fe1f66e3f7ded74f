#!/usr/bin/env bash
# The README's test command: install the package with its test extras (and the browser for the end-to-end test), run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e ".[dashboard,test]"
if ! command -v chromium >/dev/null 2>&1; then
  # Debian's Chromium for the browser test; never a browser download of a test tool's own.
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "warning: could not install chromium"
fi
python3 -m pytest -q -ra "$@"
