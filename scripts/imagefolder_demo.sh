#!/usr/bin/env bash
# The real ImageFolder path end to end with the CLI: export the sklearn digits as PNG folders, patch
# micro-rn-l on them through imagefolder:, sweep against the shapes task, select and export.
# Its output is quoted in docs/experiments.md.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf runs/demo-digits-folder data/digits-folder
python -m paint_core export-task digits --out data/digits-folder
python -m paint_core finetune --model micro-rn-l --task imagefolder:data/digits-folder --out runs/demo-digits-folder
python -m paint_core sweep --run runs/demo-digits-folder --supported shapes,colours --alphas 0:1:0.1
python -m paint_core select --run runs/demo-digits-folder
python -m paint_core export --run runs/demo-digits-folder --alpha "$(python -m paint_core select --run runs/demo-digits-folder --json | python -c 'import json,sys; print(json.load(sys.stdin)["alpha"])')" --out runs/demo-digits-folder/patched.safetensors
