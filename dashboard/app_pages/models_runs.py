"""Models & runs: fine-tune and sweep any open_clip model on a task, and export weights at an alpha."""
from __future__ import annotations

import shutil
from pathlib import Path

import streamlit as st

from paint_core.evaluation import parse_alphas
from paint_core.finetune import FinetuneConfig
from paint_core.models import list_models
from paint_core.runs import export_run, run_finetune, run_sweep
from paint_core.tasks import list_tasks

st.title("Models & runs")
st.markdown("Embedded models: " + ", ".join(f"`{m}`" for m in list_models())
            + ". Any open_clip model name works too, with a pretrained tag (downloads) or a local checkpoint file.")

with st.form("finetune_form"):
    c1, c2, c3 = st.columns(3)
    model = c1.text_input("open_clip model name", "micro-rn-s", key="mr_model")
    pretrained = c1.text_input("pretrained tag or local file (empty: shipped/random)", "", key="mr_pretrained")
    task = c2.text_input("patch task", "digits", key="mr_task", help=", ".join(list_tasks()) +
                         ", torchvision:NAME or imagefolder:PATH")
    supported = c2.text_input("supported tasks (comma-separated)", "shapes,colours", key="mr_supported")
    out = c3.text_input("run directory", "runs/my-run", key="mr_out")
    steps = c3.number_input("fine-tune steps", 1, 100_000, 300, key="mr_steps")
    lr = c3.number_input("learning rate", 1e-7, 1e-1, 3e-4, format="%.1e", key="mr_lr")
    alphas = c2.text_input("alphas", "0:1:0.1", key="mr_alphas")
    max_eval = c1.number_input("images per split for the sweep", 10, 100_000, 300, key="mr_max_eval")
    start = st.form_submit_button("Fine-tune and sweep")

if start:
    out_dir = Path(out)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)  # a cancelled earlier attempt; the finished run is never touched
    bar = st.progress(0.0, text="fine-tuning...")
    st.caption("Press Stop (top right) or change a widget to cancel: the partial run is discarded, "
               "an earlier finished run in the same directory stays as it was.")
    try:
        cfg = FinetuneConfig(steps=int(steps), lr=float(lr))
        run_finetune(tmp, model, pretrained or None, task, cfg, command="dashboard: Models & runs",
                     on_step=lambda i, loss: bar.progress(i / cfg.steps, text=f"fine-tune step {i}/{cfg.steps}, loss {loss:.3f}"))
        grid = parse_alphas(alphas)
        done = []
        run_sweep(tmp, [s.strip() for s in supported.split(",") if s.strip()], grid, max_eval=int(max_eval),
                  on_alpha=lambda t: (done.append(1), bar.progress(min(1.0, len(done) / len(grid)),
                                                                   text=f"sweep: {len(done)}/{len(grid)} alphas")))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
        st.success(f"Run written to {out_dir}; open it on the Patch page.")
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as e:
        st.error(f"Fine-tune failed: {e}")

st.subheader("Export patched weights")
with st.form("export_form"):
    c1, c2, c3 = st.columns(3)
    run_dir = c1.text_input("run directory", "cached_results/micro-rn-l/digits", key="ex_run")
    alpha = c2.number_input("alpha", 0.0, 1.0, 0.5, 0.05, key="ex_alpha")
    target = c3.text_input("output .safetensors", "patched.safetensors", key="ex_out")
    go = st.form_submit_button("Export")
if go:
    try:
        side = export_run(run_dir, float(alpha), target)
        st.success(f"Wrote {target} (sha256 {side['sha256'][:16]}..., sidecar {Path(target).with_suffix('.json')})")
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as e:
        st.error(f"Export failed: {e}")
