"""The GPU check's one markdown table, from the benchmarks' JSON lines and the check's log (scripts/gpu_check.sh).

    python scripts/gpu_check_table.py OUT/results.jsonl OUT/gpu_check.log cuda > OUT/gpu_check.md

A row whose benchmark failed or ran out of time says so, with the last line of its output.
"""
from __future__ import annotations

import json
import re
import sys

import torch


def _load(path: str) -> tuple[dict, list[dict]]:
    status, records = {}, []
    for line in open(path):
        rec = json.loads(line)
        if "row" in rec:
            status[rec["row"]] = rec
        else:
            records.append(rec)
    return status, records


def _section(log: str, name: str) -> str:
    m = re.search(rf"===== {name} \(limit.*?\n(.*?)===== {name}: exit", log, re.S)
    return m.group(1) if m else ""


def _why(status: dict, log: str, name: str) -> str:
    """Why a row has no figure: out of time, or the benchmark's last line of output."""
    st = status.get(name)
    if st is None:
        return "not run"
    if st["rc"] in (124, 137):
        return f"failed: out of time ({st['limit']} s)" if st["limit"] else "not run: the check's time was spent"
    lines = [l for l in _section(log, name).strip().splitlines() if l.strip()]
    return f"failed (exit {st['rc']}): {lines[-1][:200] if lines else 'no output'}"


def _met(ok: bool | None) -> str:
    return "" if ok is None else (" (met)" if ok else " (missed)")


def rows(status: dict, records: list[dict], log: str, device: str) -> list[tuple[str, str, str, str]]:
    """(figure, target, value, device name) in the table's order."""
    out = []
    by = lambda bench: [r for r in records if r["bench"] == bench]  # noqa: E731
    tests = _section(log, "gpu_tests")
    summary = re.findall(r"^=*\s*(\d+ (?:passed|failed|skipped|deselected|error).*?) in [\d.]+s", tests, re.M)
    st = status.get("gpu_tests")
    value = summary[-1] if summary else _why(status, log, "gpu_tests")
    ran = st is not None and device == "cuda"  # without CUDA they skip, as they should
    out.append(("`pytest -m gpu` (the gpu-marked tests)", "all pass" if device == "cuda" else "skip without CUDA",
                value + _met(st["rc"] == 0 and "passed" in value and "failed" not in value if ran else None), ""))
    model = "ViT-B-32" if device == "cuda" else "proxy-vit-224"
    setup = ([r for r in by("finetune_setup") if r["model"] == model] or [{}])[0]
    fts = by("finetune")
    for r in [r for r in fts if r["model"] != "proxy-vit-224" or device == "cpu"]:
        mfu = f"; MFU engine {r['mfu_engine']:.1%}, plain {r['mfu_plain']:.1%}" if r.get("mfu_engine") else ""
        out.append((f"fine-tune {r['model']}, {r['precision']}, batch {r['batch']}: engine / plain loop, steady state",
                    ">= 0.95", f"{r['ratio']:.3f}{_met(r['ratio'] >= 0.95)}: engine {r['engine']:,.0f} img/s, plain "
                    f"{r['plain']:,.0f}; start-up (first {r['startup_steps']} step{'s' * (r['startup_steps'] != 1)}) engine "
                    f"{r['engine_startup_s']:.2f} s, plain {r['plain_startup_s']:.2f} s{mfu}", r["device"]))
    if not [r for r in fts if r["model"] == model]:
        out.append((f"fine-tune {model}: engine / plain loop", ">= 0.95", _why(status, log, "finetune"), ""))
    best = [r for r in fts if r.get("mfu_engine") and r["model"] == model]
    if best:
        r = max(best, key=lambda r: r["mfu_engine"])
        out.append((f"model FLOP utilisation, {model} {r['precision']} batch {r['batch']} (engine)", ">= 30%",
                    f"{r['mfu_engine']:.1%}{_met(r['mfu_engine'] >= 0.30)} of {setup.get('peak_name')}; "
                    f"{setup['flops_per_image'] / 1e9:.1f} GFLOP per image per step", r["device"]))
    elif setup:
        out.append((f"model FLOP utilisation, {model}", ">= 30% (bfloat16)",
                    f"not measured: peak {setup.get('peak_name')}", setup.get("device", "")))
    if setup:
        fused = setup.get("fused_adamw", {})
        out.append(("fused AdamW (the engine's optimizer on CUDA)", "used on CUDA",
                    "yes" if fused.get("fused") else (f"failed: {fused['failed']}" if "failed" in fused else
                                                      "no (not on a CPU)" if device == "cpu" else "no"),
                    setup.get("device", "")))
        sdpa = setup.get("sdpa", {})
        out.append((f"scaled-dot-product attention in a {model} training step", "used",
                    ", ".join(sdpa.get("ops", [])) or sdpa.get("failed", "none"), setup.get("device", "")))
    comp = by("finetune_compile")
    if comp and "engine" in comp[0]:
        r = comp[0]
        mfu = f", MFU {r['mfu_engine']:.1%}" if r.get("mfu_engine") else ""
        out.append((f"fine-tune {r['model']} --compile, {r['precision']}, batch {r['batch']} (engine)", "opt-in; runs",
                    f"{r['engine']:,.0f} img/s{mfu}; start-up (compiling) {r['engine_startup_s']:.0f} s", r["device"]))
    else:
        out.append((f"fine-tune {model} --compile (engine)", "opt-in; runs",
                    f"failed: {comp[0]['failed']}" if comp else _why(status, log, "finetune_compile"), ""))
    sw = by("sweep")
    if sw:
        r = sw[0]
        out.append((f"sweep {r['model']} {r['precision']}, 11 alphas x {r['tasks']} tasks x {r['n']:,} images: engine "
                    f"(decode counted, {r['workers']} workers) / 11 bare passes", "<= 1.2",
                    f"{r['ratio']:.2f}{_met(r['ratio'] <= 1.2)}: bare {r['bare_s']:.2f} s, engine start-up (heads, "
                    f"decode) {r['startup_s']:.2f} s + 11 alphas {r['alphas_s']:.2f} s (steady {r['steady_ratio']:.2f}x)"
                    f"; accuracies equal: {r['largest_accuracy_difference'] < 1e-12}", r["device"]))
    else:
        out.append(("sweep: engine / 11 bare passes", "<= 1.2", _why(status, log, "sweep"), ""))
    sl = by("slider")
    if sl:
        r = sl[0]
        gpu = "cuda" in device
        out.append((f"Patch page cold move, {r['model']}, {r['n_per_task']:,} images x {r['tasks']} tasks",
                    "< 150 ms on a GPU" if gpu else "< 150 ms on a GPU (not applicable on a CPU)",
                    f"{r['live_ms']:.1f} ms{_met(r['live_ms'] < 150 if gpu else None)} in {r['precision']}; "
                    f"naive {r['naive_ms']:.0f} ms; weights {r['weights_ms']:.1f} ms; 21-position warm-up "
                    f"{r['warm_s']:.1f} s", r["device"]))
    else:
        out.append(("Patch page cold move", "< 150 ms on a GPU", _why(status, log, "slider"), ""))
    fd = by("feed")
    if fd:
        r = fd[0]
        out.append((f"batch feed alone, 224 px, batch {r['batch']}, shuffled", "well above the model's pace",
                    f"engine {r['engine_float']:,.0f} img/s (float in memory), {r['engine_uint8']:,.0f} (decoded "
                    f"uint8); before {r['before']:,.0f}; plain slicing {r['plain_slicing']:,.0f}", r["device"]))
    else:
        out.append(("batch feed alone", "well above the model's pace", _why(status, log, "feed"), ""))
    proxy = [r for r in fts if r["model"] == "proxy-vit-224" and r["precision"] == "fp32" and r["batch"] == 128]
    if proxy:
        r = proxy[0]
        out.append(("CPU proxy: proxy-vit-224 (~20 MFLOP/image) fine-tune, fp32, batch 128: engine / plain loop",
                    ">= 0.95", f"{r['ratio']:.3f}{_met(r['ratio'] >= 0.95)}: engine {r['engine']:,.0f} img/s, plain "
                    f"{r['plain']:,.0f}", r["device"]))
    else:
        out.append(("CPU proxy: engine / plain loop", ">= 0.95", _why(status, log, "cpu_proxy"), ""))
    return out


def main() -> None:
    json_path, log_path, device = sys.argv[1:4]
    status, records = _load(json_path)
    log = open(log_path).read()
    version = torch.__version__
    print(f"# GPU check ({device})\n")
    print("| figure | target | value | device | torch |")
    print("|---|---|---|---|---|")
    for figure, target, value, name in rows(status, records, log, device):
        print(f"| {figure} | {target} | {value.replace('|', '/')} | {name or '-'} | {version} |")
    spent = sum(s["seconds"] for s in status.values())
    print(f"\nRows took {spent} s in all: " + ", ".join(f"{k} {v['seconds']} s" for k, v in status.items()) + ".")


if __name__ == "__main__":
    main()
