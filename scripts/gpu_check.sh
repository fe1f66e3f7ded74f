#!/usr/bin/env bash
# The device command (one line, run from the repository root with .whl carried; see README "Speed"):
# python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD && bash scripts/gpu_check.sh --device cuda --out "$OUT"
#
# The GPU check of issue 28: the gpu-marked tests and every speed benchmark, each row under its own time limit,
# into one markdown table (figure, target, value, device, torch) at OUT/gpu_check.md, the benchmarks' figures as
# JSON lines at OUT/results.jsonl and all their output at OUT/gpu_check.log (three files: a device run brings
# back at most eight). Needs no network, no cached_results/ and neither large weights file: ViT-B-32 is built
# with random weights from open_clip's config, the GPU tests use micro-rn-s. The package need not be installed:
# PYTHONPATH holds the repository root. A row that fails or runs out of time says so in the table; the others
# still run. Time: at most BUDGET seconds of rows (5 min 40 s with --device cuda, under 4 min with cpu), then the table.
#   scripts/gpu_check.sh --device cuda --out DIR        # ViT-B-32 on the GPU, the CPU proxy on its CPU
#   scripts/gpu_check.sh --device cpu --quick --out DIR # the same rows on the proxy tower, small: < 4 minutes
set -u
DEVICE=cuda
QUICK=0
OUTDIR=""
while [ $# -gt 0 ]; do
    case "$1" in
        --device) DEVICE="$2"; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --out) OUTDIR="$2"; shift 2 ;;
        *) echo "usage: scripts/gpu_check.sh [--device cuda|cpu] [--quick] --out DIR" >&2; exit 1 ;;
    esac
done
if [ -z "$OUTDIR" ]; then echo "usage: scripts/gpu_check.sh [--device cuda|cpu] [--quick] --out DIR" >&2; exit 1; fi
if [ "$DEVICE" != cuda ] && [ "$DEVICE" != cpu ]; then echo "--device must be cuda or cpu, got $DEVICE" >&2; exit 1; fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT" || exit 1
mkdir -p "$OUTDIR" || exit 1
OUTDIR="$(cd "$OUTDIR" && pwd)"
LOG="$OUTDIR/gpu_check.log"
JSON="$OUTDIR/results.jsonl"
: > "$LOG"
: > "$JSON"
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$ROOT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TQDM_DISABLE=1
export PAINT_CACHE_DIR="$(mktemp -d)"
PY="${PYTHON:-python3}"
# Seconds for all rows together (the device run's own limit is 10 minutes, installing the wheels included); each
# row also has its own ceiling, and the rows run in order of importance, torch.compile (opt-in, slowest) last.
BUDGET=340
if [ "$DEVICE" = cpu ]; then
    BUDGET=225
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # one thread: host-side costs, steady on a shared machine
fi

row() {  # row NAME LIMIT_SECONDS COMMAND...: run it under a time limit, its output into the log, status into JSON
    local name="$1" limit="$2"; shift 2
    local t0=$SECONDS left=$((BUDGET - SECONDS))
    if [ "$left" -lt 20 ]; then
        echo "{\"row\": \"$name\", \"rc\": 124, \"seconds\": 0, \"limit\": 0}" >> "$JSON"
        echo "$name: not run, the check's ${BUDGET} s are spent"; return
    fi
    if [ "$limit" -gt "$left" ]; then limit=$left; fi
    echo "===== $name (limit ${limit}s): $*" >> "$LOG"
    timeout --kill-after=10 "$limit" "$@" >> "$LOG" 2>&1
    local rc=$?
    echo "===== $name: exit $rc after $((SECONDS - t0)) s" >> "$LOG"
    echo "{\"row\": \"$name\", \"rc\": $rc, \"seconds\": $((SECONDS - t0)), \"limit\": $limit}" >> "$JSON"
    echo "$name: exit $rc after $((SECONDS - t0)) s"
}

GPU_TESTS=$(grep -l "pytest.mark.gpu" tests/test_*.py | tr '\n' ' ')
row gpu_tests 100 "$PY" -m pytest -m gpu -q -p no:cacheprovider $GPU_TESTS

if [ "$DEVICE" = cuda ]; then
    MODEL=ViT-B-32
    row finetune 120 "$PY" -m benchmarks.finetune --model $MODEL --device cuda --precisions fp32,amp_bf16 \
        --batch-sizes 128,512 --steps 10 --startup-steps 3 --rounds 2 --json "$JSON"
    row sweep 70 "$PY" -m benchmarks.sweep --model $MODEL --device cuda --precision amp_bf16 --n 2000 --workers 8 \
        --json "$JSON"
    row slider 90 "$PY" -m benchmarks.slider --model $MODEL --device cuda --n 1000 --moves 5 --json "$JSON"
    row feed 40 "$PY" -m benchmarks.feed --device cuda --batch-size 512 --json "$JSON"
    row cpu_proxy 45 "$PY" -m benchmarks.finetune --model proxy-vit-224 --device cpu --batch-sizes 128 --steps 10 \
        --rounds 3 --json "$JSON"
    row finetune_compile 150 "$PY" -m benchmarks.finetune --model $MODEL --device cuda --batch-sizes 512 --steps 10 \
        --startup-steps 3 --compile --json "$JSON"
else
    MODEL=proxy-vit-224
    if [ "$QUICK" = 1 ]; then FT="--steps 5 --startup-steps 1 --rounds 3 --batches 2"; N=100; else FT=""; N=500; fi
    row finetune 130 "$PY" -m benchmarks.finetune --model $MODEL --device cpu --precisions fp32,amp_bf16 \
        --batch-sizes 128,512 $FT --json "$JSON"
    row sweep 40 "$PY" -m benchmarks.sweep --model $MODEL --device cpu --n $N --workers 2 --json "$JSON"
    row slider 30 "$PY" -m benchmarks.slider --model $MODEL --device cpu --n $N --moves 3 --json "$JSON"
    row feed 30 "$PY" -m benchmarks.feed --device cpu --batch-size 128 --count 8 --json "$JSON"
    row finetune_compile 100 "$PY" -m benchmarks.finetune --model $MODEL --device cpu --batch-sizes 128 $FT \
        --compile --json "$JSON"
fi
"$PY" scripts/gpu_check_table.py "$JSON" "$LOG" "$DEVICE" > "$OUTDIR/gpu_check.md"
rm -rf "$PAINT_CACHE_DIR"
cat "$OUTDIR/gpu_check.md"
