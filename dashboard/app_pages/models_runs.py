"""Models & runs: fine-tune and sweep a model on a task, search a per-block plan, and export weights at an alpha.

Every typed value is checked against the server's policy (dashboard/policy.py) before any work: runs are
written only under the write root, existing runs are replaced only when asked, and one job runs at a time.
A fine-tune or a search runs as a background job (paint_core.app.jobs): its own process, listed here with progress,
log, cancel and a link to the run it made.
"""
from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from dashboard import serving, text
from dashboard.policy import MAX_SEARCH_BUDGET, check_finetune, check_search, may_cancel, policy
from paint_core.core.plan import Plan, read_plan
from paint_core.engine.evaluation import parse_alphas
from paint_core.studies.patch import SweepSpec, export_run
from paint_core.data.tasks import list_tasks
from paint_core.io.writes import check_run_output, resolve_inside
from paint_core.app.jobs import FinetuneJob, SearchJob, cancel_job, list_jobs, read_log, start_job
from paint_core.studies.search import default_plan_path
from paint_core.studies.search_methods import SEARCHERS

DOWNLOAD_LIMIT = 200 * 2**20  # bytes a browser download may carry from this page
JOBS_SHOWN = 10                # the newest jobs listed
JOB_POLL_S = 2.0               # how often the job list refreshes while a job runs
STATE_LABELS = {"running": "running", "done": "done", "failed": "failed", "cancelled": "cancelled",
                "lost": "stopped without a word"}
PATCH_PAGE = Path(__file__).resolve().parent / "patch.py"

def folder_zip(folder: Path) -> bytes:
    """An export folder as zip bytes (its files at the top level), for the browser's download."""
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(folder.iterdir()):
            z.write(f, f.name)
    return buf.getvalue()


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
    start = st.form_submit_button("Fine-tune and sweep", key="mr_start")

if start:
    try:
        req = check_finetune(server, model, pretrained, task, supported, out, int(steps), int(max_eval))
        check_run_output(req.out, replace)  # the job checks again, but a refusal belongs on this page, now
        alpha_list = tuple(parse_alphas(alphas))
        SweepSpec(req.supported, alpha_list, max_eval=req.max_eval).validate()
        runtime = serving.server_runtime()
        spec = FinetuneJob(out=str(req.out), model=req.model, pretrained=req.pretrained, task=req.task,
                           supported=tuple(req.supported), alphas=alpha_list, steps=req.steps, lr=float(lr),
                           max_eval=req.max_eval, overwrite=replace, runtime=runtime,
                           command="dashboard: Models & runs")
        started = start_job(serving.jobs_root(), spec, f"fine-tune of {req.model} on {req.task} into {req.out.name}",
                            limit=server.max_jobs, owner=serving.session_id())
        st.session_state["_running_jobs"] = {j.id for j in list_jobs(serving.jobs_root()) if j.running} | {started}
        st.success(f"Job started: it runs on the server in a process of its own, so closing this tab loses "
                   f"nothing. Follow it below; its run will be {req.out}.")
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as e:
        st.error(f"Fine-tune refused: {e}")

st.subheader("Search a per-block plan")
st.caption("One coefficient per block of the image tower, searched under PAINT's rule: the patch task's val "
           "accuracy as high as it goes while the supported tasks stay within the tolerance of zero-shot. cma "
           "measures each plan on the val splits (about 1.5 s a plan for the embedded model on 2 cores); "
           "adamerging learns the coefficients from unlabeled patch images, then checks the rule. The plan is "
           "written into the run, where the Patch page's per-block mode offers it.")
with st.form("search_form"):
    c1, c2, c3 = st.columns(3)
    search_run_dir = c1.text_input("run directory (under the write root)", "runs/my-run", key="se_run")
    method = c2.selectbox("method", SEARCHERS, key="se_method")
    budget = c3.number_input("plans to measure (cma)", 1, MAX_SEARCH_BUDGET, 60, key="se_budget")
    tolerance = c3.number_input("supported drift allowed (points)", 0.0, 10.0, 1.0, step=0.5, key="se_tolerance")
    start_search = st.form_submit_button("Search", key="se_start")
if start_search:
    try:
        req = check_search(server, search_run_dir, method, int(budget), float(tolerance))
        runtime = serving.server_runtime()
        plan_file = default_plan_path(req.run, req.method)
        spec = SearchJob(run=str(req.run), out=str(plan_file), method=req.method, budget=req.budget,
                         tolerance=req.tolerance, runtime=runtime,
                         command="dashboard: Models & runs")
        started = start_job(serving.jobs_root(), spec, f"{req.method} search of {req.run.name}",
                            limit=server.max_jobs, owner=serving.session_id())
        st.session_state["_running_jobs"] = {j.id for j in list_jobs(serving.jobs_root()) if j.running} | {started}
        st.success(f"Search started as a background job; its plan will be {plan_file}.")
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as e:
        st.error(f"Search refused: {e}")


def _job_list() -> None:
    """The server's jobs, newest first: progress, log, cancel (any session's, see policy.may_cancel), and the
    run made."""
    jobs = list_jobs(serving.jobs_root())[:JOBS_SHOWN]
    running = {j.id for j in jobs if j.running}
    if running != st.session_state.get("_running_jobs", running):
        st.session_state["_running_jobs"] = running
        st.rerun(scope="app")  # a job ended or started elsewhere: redraw the page (and stop polling if idle)
    st.session_state["_running_jobs"] = running
    if not jobs:
        st.caption("No job yet on this server.")
    for j in jobs:
        box = st.container(border=True)
        head, buttons = box.columns([4, 1])
        head.markdown(f"**{j.description}** · {STATE_LABELS.get(j.state, j.state)} · started "
                      f"{time.strftime('%H:%M:%S', time.localtime(j.started))} · "
                      f"{text.job_timing(j.started, j.ended, j.running, time.time())}")
        if j.total:
            loss = f", loss {j.loss:.3f}" if j.loss is not None else ""
            head.progress(min(1.0, j.done / j.total), text=f"{j.what}: {j.done}/{j.total}{loss}")
        if j.message:
            (head.error if j.state in ("failed", "lost") else head.caption)(j.message)
        if j.running and may_cancel(server):
            if buttons.button("Cancel", key=f"cancel_{j.id}",
                              help=None if j.owner == serving.session_id() else "started by another session"):
                cancel_job(serving.jobs_root(), j.id, by=serving.session_id())
                st.rerun(scope="app")  # "fragment" raises when the list is drawn by a full run (as in AppTest)
        if j.state == "done" and (Path(j.run) / "run.json").is_file():
            if buttons.button("Open on the Patch page", key=f"open_{j.id}"):
                st.session_state["open_run"] = j.run
                st.switch_page(PATCH_PAGE)
        with box.expander("log"):
            st.code(read_log(serving.jobs_root(), j.id)[-4000:] or "(empty)", language=None)


st.subheader("Jobs")
st.caption("Fine-tunes and searches run as background jobs on the server, one at a time unless its operator allows more "
           "(PAINT_MAX_JOBS): a closed tab or a crash of this page stops nothing, and a cancelled job writes nothing. "
           "Anyone who may start a job here may cancel a running one, also after a page reload.")
_polling = any(j.running for j in list_jobs(serving.jobs_root()))  # refresh on its own only while a job runs
st.fragment(run_every=JOB_POLL_S if _polling else None)(_job_list)()

st.subheader("Export patched weights")
with st.form("export_form"):
    c1, c2, c3 = st.columns(3)
    run_dir = c1.text_input("run directory", "cached_results/micro-rn-l/digits", key="ex_run")
    alpha_text = c2.text_input("alpha, or a plan.json (empty: the alpha the run chose on val)", "",
                               key="ex_alpha", help="A number in [0, 1], or the path of a per-block plan (the "
                               "search writes plan-METHOD.json into the run; the Patch page downloads one)")
    target = c3.text_input("output .safetensors", "runs/patched.safetensors", key="ex_out")
    overwrite = c3.checkbox("replace an earlier export with this name", False, key="ex_replace")
    as_hub = c3.checkbox("a hub folder with a model card (give a folder name; downloads as a zip)", False,
                         key="ex_hub")
    go = st.form_submit_button("Export", key="ex_go")
if go:
    try:
        source = resolve_inside(run_dir, server.read_roots, "run directory")
        dest = resolve_inside(target, [server.write_root], "output")
        coefficient = alpha_text.strip()
        if coefficient.endswith(".json"):
            alpha = read_plan(resolve_inside(coefficient, server.read_roots, "plan"))
        else:
            try:
                alpha = float(coefficient) if coefficient else None
            except ValueError:
                raise ValueError(f"alpha {alpha_text!r}: give a number in [0, 1] or a plan.json, or leave it empty "
                                 "for the alpha the run chose on val") from None
        side = export_run(source, alpha, dest, overwrite=overwrite, card=as_hub)
        exported = Plan.of(side["alpha"]) if side["alpha"] is not None else Plan.per_block(side["plan"])
        where = "README.md model card, open_clip_config.json" if as_hub else (
            "open_clip_config.json" if dest.is_dir() else f"sidecar {dest.with_suffix('.json').name}")
        st.success(f"Wrote {dest} at {exported.label()} (sha256 {side['sha256'][:16]}..., {where})")
        size = sum(f.stat().st_size for f in dest.iterdir()) if dest.is_dir() else dest.stat().st_size
        if size > DOWNLOAD_LIMIT:
            st.caption(f"{size / 2**20:.0f} MB: too large to send through the page; fetch it from "
                       "the server's write folder.")
        elif dest.is_dir():
            st.download_button("Download the folder as a zip", folder_zip(dest), file_name=f"{dest.name}.zip",
                               mime="application/zip", key="ex_download")
        else:
            st.download_button("Download the weights", dest.read_bytes(), file_name=dest.name,
                               mime="application/octet-stream", key="ex_download")
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as e:
        st.error(f"Export refused or failed: {e}")
