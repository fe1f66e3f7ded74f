"""Patch: the alpha slider re-interpolates the weights live; accuracies, samples and the frontier follow."""
from __future__ import annotations

import json

import streamlit as st

from dashboard import explorer, figures, opened_runs, text
from paint_core.app.runs import run_tasks
from paint_core.core.frontier import frontier, plan_points
from paint_core.core.plan import Plan, early_blocks_frozen
from paint_core.live.sessions import SLIDER_STEP
from paint_core.data.tasks import get_task

st.title("Patch: interpolate zero-shot and fine-tuned weights")
st.caption("theta(alpha) = (1 - alpha) * theta_zero-shot + alpha * theta_fine-tuned. Moving the slider "
           "re-interpolates the weights and re-evaluates a fixed subsample (each position once for everyone: the "
           "answers are shared between sessions).")

session = opened_runs.open_session(default_task="digits", key="patch_run")
run = session.run
path = str(run.path)
patch_task = run.meta["task"]
chosen = opened_runs.chosen_alpha(path)
opened_runs.follow_run(path, "alpha", chosen, 0.0)
df = opened_runs.sweep_of(path)
supported = [t for t in run_tasks(run) if t != patch_task]
# the slider moves over the sweep's own grid when it is fine enough: every position then has its whole-split figure
step, grid = explorer.slider_grid(df["alpha"].unique() if len(df) else (), SLIDER_STEP)
grid_keys = {explorer.alpha_key(a) for a in grid}
degenerate = text.degenerate_run_note((run.meta.get("config") or {}).get("steps"), patch_task, df)
if degenerate:
    st.info(degenerate)
split = st.radio("Frontier split", ["test", "val"], horizontal=True, key="split") if len(df) else "test"
f, frontier_error = None, None  # alpha does not change it: computed once per page run, not per slider move
if len(df):
    try:
        f = frontier(df, patch_task, supported, split)
    except ValueError as e:
        frontier_error = e
task = get_task(patch_task, root=run.meta.get("data_root"))
raw = task.split("test")
names = session.eval_sets[patch_task].classnames
n_samples = min(12, len(raw))
thumbs = opened_runs.sample_thumbnails(path, patch_task, n_samples)  # encoded once per run, sent once per page
sample_labels = [raw[i][1] for i in range(n_samples)]
EXPLORER_KEY = "patch_explorer"


def take_reported_alpha() -> None:
    """The browser's explorer reports its alpha (for this run) after a move: it becomes this session's alpha."""
    reported = (st.session_state.get(EXPLORER_KEY) or {}).get("alpha")
    if isinstance(reported, dict) and reported.get("run") == path and isinstance(reported.get("alpha"), (int, float)):
        st.session_state["alpha"] = min(1.0, max(0.0, round(round(float(reported["alpha"]) / step) * step, 2)))


@st.fragment
def alpha_view() -> None:
    """The slider and everything it changes, drawn by the browser from every position computed so far; the
    server reruns only this fragment, when the browser reports its alpha or asks for a position it lacks."""
    alpha = float(st.session_state.get("alpha", chosen if chosen is not None else 0.0))
    alpha = min(1.0, max(0.0, round(round(alpha / step) * step, 2)))  # on the slider's grid
    session.set_alpha(alpha)
    session.probabilities()  # the position itself: a lookup when precomputed, else computed now and shared
    positions = opened_runs.explorer_positions(path, tuple(supported), tuple(int(y) for y in sample_labels))
    entries = {k: e for k, e in positions.entries().items() if k in grid_keys}
    svg, note = None, None
    if frontier_error is not None:
        note = f"The sweep table cannot draw a frontier: {frontier_error}"
    elif f is not None:
        svg = positions.frontier_svg(f, chosen, split, opened_runs.sweep_stamp(path), entries)
        note = ("Each point is one alpha, patch accuracy against the mean supported accuracy (the frontier); the "
                "dashed chord joins zero-shot and fine-tuned, where mixing the two models' answers would land. "
                "Points above it are what interpolating weights buys. The star is the paper's choice: the alpha "
                "with the best average of patch and supported accuracy on validation data. The red circle is the "
                "curve at the slider (the whole split, from the sweep), the red x the live sample (it can sit off "
                "the curve: it is measured on fewer images). Hover over a point for its alpha.")
    else:
        note = f"No sweep yet for this run: `python -m paint_core sweep --run {path} --supported shapes,colours`"
    whole = explorer.whole_split(df, split, patch_task, supported) if len(df) else {}
    data = explorer.payload(path, alpha, chosen, entries, len(grid), step, patch_task, thumbs, svg, split, note, whole)
    explorer.alpha_explorer(data, key=EXPLORER_KEY, on_alpha_change=take_reported_alpha)

BLOCK_STEP = 0.01  # a block slider's step: a searched plan's coefficients are shown to two decimals


def block_key(block: str) -> str:
    return f"block::{path}::{block}"


def apply_preset(coefficients: dict[str, float]) -> None:
    """A preset button's callback: it moves every block slider (before the sliders are drawn again)."""
    for b, c in coefficients.items():
        st.session_state[block_key(b)] = round(round(c / BLOCK_STEP) * BLOCK_STEP, 2)


@st.fragment
def block_view() -> None:
    """One slider per block the fine-tune changed; the subsample is re-scored at the plan (computed once per plan
    and shared through the run's store) and the plan drawn beside the uniform frontier."""
    blocks = opened_runs.run_blocks(path)
    searched, problems = opened_runs.run_searched_plans(path)
    for problem in problems:
        st.warning(problem)
    here = float(st.session_state.get("alpha", chosen if chosen is not None else 0.5))
    presets = {f"uniform at alpha {here:g}": (Plan.of(here), "every block at the current alpha"),
               "early blocks frozen": (early_blocks_frozen(blocks, here), f"{', '.join(blocks[:len(blocks) // 2])} "
                                       f"at 0 (zero-shot), the rest at {here:g}")}
    for sp in searched:
        kept = "" if not sp.plan.is_uniform else f"; no plan beat uniform alpha {sp.plan.key}, which it kept"
        about = f"{sp.file.name}: val patch {100 * sp.val.patch:.1f}%, supported drift {100 * sp.val.drift:+.1f} points"
        presets[f"searched by {sp.file.stem.removeprefix('plan-')}"] = (sp.plan, about + kept)
    for col, (label, (preset, about)) in zip(st.columns(len(presets)), presets.items()):
        col.button(label, key=f"preset::{label}", on_click=apply_preset, help=about,
                   args=({b: preset.coefficient(b) for b in blocks},), width="stretch")
    coefficients = {}
    for row in range(0, len(blocks), 4):  # in forward order, four to a row
        for col, b in zip(st.columns(4), blocks[row:row + 4]):
            st.session_state.setdefault(block_key(b), round(here, 2))
            coefficients[b] = col.slider(b, 0.0, 1.0, step=BLOCK_STEP, key=block_key(b))
    plan = Plan.per_block(coefficients)
    session.set_plan(plan)
    now, zero = session.accuracies(), session.accuracies(session.zero_shot_probs)
    n = {t: len(e.labels) for t, e in session.eval_sets.items()}
    st.markdown(f"**{plan.label()}** · key `{plan.key}`")
    for col, (t, a) in zip(st.columns(len(now)), now.items()):
        col.metric(f"{t} ({'patch' if t == patch_task else 'supported'}), live: first {n[t]} test images",
                   f"{100 * a:.1f}%", f"{100 * (a - zero[t]):+.1f} vs zero-shot")
    if f is None:
        return
    live = (now[patch_task], sum(now[t] for t in supported) / len(supported)) if supported else None
    points = plan_points(opened_runs.sweep_of(path, per_block=True), patch_task, supported, split)
    measured = points[points["alpha"].isna()]
    on_split = {sp.method: (sp.val if split == "val" else sp.test) for sp in searched}
    marked = {f"searched by {method} ({split})": (m.patch, m.supported) for method, m in on_split.items()}
    st.plotly_chart(figures.frontier_figure(f, patch_task, chosen=chosen, live=live, split=split, plans=measured,
                                            marked=marked), key="block_frontier")
    if plan.key in measured.index:
        row = measured.loc[plan.key]
        st.caption(f"This plan on the whole {split} split (from the sweep): patch {100 * row['patch']:.1f}%, "
                   f"supported {100 * row['supported']:.1f}%.")
    st.caption("The curve is one alpha for every weight; the diamonds are the plans searches chose and the small "
               "points the per-block plans measured on the whole split (on val every plan a search tried, on test "
               "only the plans it chose: it never looks at test); the red x is this plan on the live subsample. "
               "Use a plan "
               "elsewhere: download it and run `python -m paint_core export --run-dir RUN --plan plan.json --out "
               "patched.safetensors`.")
    st.download_button("This plan as plan.json", json.dumps(plan.to_json(), indent=1), file_name="plan.json",
                       mime="application/json", key="plan_json")


mode = st.radio("Coefficients", ["one alpha", "per block"], horizontal=True, key="coef_mode",
                help="One alpha mixes every weight alike (PAINT); per block gives each block of the image tower its "
                     "own coefficient.")
if mode == "one alpha":
    alpha_view()
else:
    block_view()
st.caption(opened_runs.live_precision_note(path))
if f is not None:
    st.plotly_chart(figures.frontier_figure(f, patch_task, chosen=chosen, split=split), key="frontier")
    st.caption("The frontier again as an interactive chart (zoom, hover, export as PNG from its toolbar).")
if len(df):
    st.plotly_chart(figures.accuracy_vs_alpha_figure(df, split), key="acc_vs_alpha")
    st.caption("Every task along alpha, on the whole split of the sweep.")
if f is not None:
    with st.expander("Frontier table"):
        st.dataframe(figures.gap_table(f), key="gap_table", hide_index=True)

pick = st.selectbox("Follow one sample along alpha", list(range(n_samples)), key="sample_pick",
                    format_func=lambda i: f"sample {i + 1} (true {names[sample_labels[i]]})")
story = session.along_alpha(patch_task, int(pick))
st.plotly_chart(figures.along_alpha_figure(story, names[sample_labels[int(pick)]]), key="sample_story")
st.download_button("This sample's probabilities along alpha as CSV", story.to_csv(), file_name="sample_along_alpha.csv",
                   mime="text/csv", key="sample_story_csv")
if len(df):
    st.download_button("The sweep (every alpha, task and split) as CSV", df.to_csv(index=False),
                       file_name="sweep.csv", mime="text/csv", key="sweep_csv")
