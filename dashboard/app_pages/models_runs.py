"""Models & runs: fine-tune and sweep a model on a task, and export weights at an alpha.

Every typed value is checked against the server's policy (dashboard/policy.py) before any work: runs are
written only under the write root, existing runs are replaced only when asked, and one job runs at a time.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard.policy import check_finetune, policy
from dashboard.state import job_slots
from paint_core.engine.evaluation import parse_alphas
from paint_core.engine.finetune import FinetuneConfig
from paint_core.studies.patch import SweepSpec, export_run, run_finetune
from paint_core.data.tasks import list_tasks
from paint_core.engine.training import Progress
from paint_core.io.writes import resolve_inside

DOWNLOAD_LIMIT = 200 * 2**20  # bytes a browser download may carry from this page

st.title("Models & runs")
try:
    server = policy()
except ValueError as e:
    st.error(f"The server's configuration is invalid: {e}")
    st.stop()
if server.read_only:
    st.info("This dashboard is read-only: fine-tuning and export are switched off by its operator "
            "(PAINT_READ_ONLY). Every other page works as usual; make runs with `python -m paint_core finetune`.")
    st.stop()
st.markdown("Models offered here: " + ", ".join(f"`{m}`" for m in server.models)
            + f". Runs are written under `{server.write_root}`; at most {server.max_steps} steps per fine-tune "
            f"and {server.max_jobs} job(s) at once on this server.")

with st.form("finetune_form"):
    c1, c2, c3 = st.columns(3)
    model = c1.text_input("model name", "micro-rn-s", key="mr_model")
    pretrained = c1.text_input("pretrained tag or checkpoint file (empty: the shipped weights)", "",
                               key="mr_pretrained")
    task = c2.text_input("patch task", "digits", key="mr_task", help=", ".join(list_tasks()) +
                         ", or imagefolder:PATH under a data folder")
    supported = c2.text_input("supported tasks (comma-separated)", "shapes,colours", key="mr_supported")
    out = c3.text_input("run directory", "runs/my-run", key="mr_out")
    replace = c3.checkbox("replace the run already in this directory", False, key="mr_replace")
    steps = c3.number_input("fine-tune steps", 1, server.max_steps, min(300, server.max_steps), key="mr_steps")
    lr = c3.number_input("learning rate", 1e-7, 1e-1, 3e-4, step=1e-5, format="%.1e", key="mr_lr")
    alphas = c2.text_input("alphas", "0:1:0.1", key="mr_alphas")
    max_eval = c1.number_input("images per split for the sweep", 10, server.max_eval, min(300, server.max_eval),
                               key="mr_max_eval")
    start = st.form_submit_button("Fine-tune and sweep")

if start:
    slots = job_slots(server.max_jobs)
    job = None
    try:
        req = check_finetune(server, model, pretrained, task, supported, out, int(steps), int(max_eval))
        spec = SweepSpec(req.supported, tuple(parse_alphas(alphas)), max_eval=req.max_eval)
        job = slots.try_start(f"fine-tune of {req.model} on {req.task} into {req.out.name}")
        if job is None:
            raise RuntimeError("the server is already running its limit of training jobs ("
                               + "; ".join(slots.running.values()) + "); try again when one finishes")
        bar = st.progress(0.0, text="fine-tuning...")
        st.caption("Press Stop (top right) or change a widget to cancel: nothing is written, and an earlier "
                   "run in the same directory stays as it was.")
        cfg = FinetuneConfig(steps=req.steps, lr=float(lr))

        def report(p: Progress) -> None:
            loss = f", loss {p.loss:.3f}" if p.loss is not None else ""
            bar.progress(min(1.0, p.done / p.total), text=f"{p.what}: {p.done}/{p.total}{loss}")

        run_finetune(req.out, req.model, req.pretrained, req.task, cfg, command="dashboard: Models & runs",
                     overwrite=replace, sweep_spec=spec, on_progress=report)
        st.success(f"Run written to {req.out}; open it on the Patch page.")
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as e:
        st.error(f"Fine-tune refused or failed: {e}")
    finally:
        if job is not None:
            slots.finish(job)

st.subheader("Export patched weights")
with st.form("export_form"):
    c1, c2, c3 = st.columns(3)
    run_dir = c1.text_input("run directory", "cached_results/micro-rn-l/digits", key="ex_run")
    alpha_text = c2.text_input("alpha (empty: the alpha the run chose on val)", "", key="ex_alpha")
    target = c3.text_input("output .safetensors", "runs/patched.safetensors", key="ex_out")
    overwrite = c3.checkbox("replace an earlier export with this name", False, key="ex_replace")
    go = st.form_submit_button("Export")
if go:
    try:
        source = resolve_inside(run_dir, server.read_roots, "run directory")
        dest = resolve_inside(target, [server.write_root], "output")
        try:
            alpha = float(alpha_text) if alpha_text.strip() else None
        except ValueError:
            raise ValueError(f"alpha {alpha_text!r}: give a number in [0, 1], or leave it empty for the alpha "
                             "the run chose on val") from None
        side = export_run(source, alpha, dest, overwrite=overwrite)
        st.success(f"Wrote {dest} at alpha {side['alpha']:g} (sha256 {side['sha256'][:16]}..., sidecar "
                   f"{Path(dest).with_suffix('.json').name})")
        if dest.stat().st_size <= DOWNLOAD_LIMIT:
            st.download_button("Download the weights", dest.read_bytes(), file_name=dest.name,
                               mime="application/octet-stream", key="ex_download")
        else:
            st.caption(f"{dest.stat().st_size / 2**20:.0f} MB: too large to send through the page; fetch it from "
                       "the server's write folder.")
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as e:
        st.error(f"Export refused or failed: {e}")
