"""Patch: the alpha slider re-interpolates the weights live; accuracies, samples and the frontier follow."""
from __future__ import annotations

import streamlit as st

from dashboard import figures, state
from paint_core.core.frontier import frontier
from paint_core.live.sessions import SLIDER_STEP
from paint_core.data.tasks import get_task

st.title("Patch: interpolate zero-shot and fine-tuned weights")
st.caption("theta(alpha) = (1 - alpha) * theta_zero-shot + alpha * theta_fine-tuned. Moving the slider "
           "re-interpolates the weights and re-evaluates a fixed subsample (each position once for everyone: the "
           "answers are shared between sessions).")

session = state.open_session(default_task="digits", key="patch_run")
run = session.run
path = str(run.path)
patch_task = run.meta["task"]
chosen = state.chosen_alpha(path)
state.follow_run(path, "alpha", chosen, 0.0)
df = state.sweep_of(path)
supported = [t for t in state.run_tasks(run) if t != patch_task]
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
thumbs = state.sample_thumbnails(path, patch_task, n_samples)  # encoded once per run, the same bytes every move
sample_labels = [raw[i][1] for i in range(n_samples)]


@st.fragment
def alpha_view() -> None:
    """Everything a slider move changes; a move reruns only this (the rest of the page is not resent)."""
    alpha = st.slider("alpha", 0.0, 1.0, value=float(chosen if chosen is not None else 0.0), step=SLIDER_STEP,
                      key="alpha", help="0 = zero-shot, 1 = fine-tuned on the patch task")
    session.set_alpha(alpha)
    probs = session.probabilities()
    if session.store is not None:
        ready = len(session.store.alphas())
        st.caption(f"{ready} of {int(round(1 / SLIDER_STEP)) + 1} slider positions precomputed for this run (shared by "
                   "all sessions, filled in the background): a precomputed position updates in milliseconds.")
    acc = session.accuracies()
    zs_acc = session.zero_shot_accuracies()
    st.subheader(f"Live accuracy at alpha = {alpha:g}" + (f" (paper's choice on val: {chosen:g})" if chosen is not None else ""))
    cols = st.columns(len(acc))
    for col, (t, a) in zip(cols, acc.items()):
        role = "patch" if t == patch_task else "supported"
        n = len(session.eval_sets[t].labels)
        col.metric(f"{t} ({role}, n={n})", f"{100 * a:.1f}%", f"{100 * (a - zs_acc[t]):+.1f} vs zero-shot")
    st.caption("The patch task is the one being fixed; the supported tasks are the ones the model must keep doing "
               f"well. Live numbers are measured now on the first {len(next(iter(session.eval_sets.values())).labels)} "
               "test images of each task, so they can differ by a few points from the curves below, which use the "
               "whole split of the sweep.")
    left, right = st.columns(2)
    if frontier_error is not None:
        left.error(f"The sweep table cannot draw a frontier: {frontier_error}")
    elif f is not None:
        pictures = state.frontier_pictures(path, split, tuple(supported))
        live = pictures.live_point(acc)
        left.image(pictures.get(alpha, live), output_format="PNG",
                   caption=f"Frontier ({split}) at alpha {alpha:g}: live subsample patch {100 * live[0]:.1f}%, "
                           f"supported {100 * live[1]:.1f}%")
        left.caption("Each point is one alpha, patch accuracy against the mean supported accuracy (the "
                     "frontier); the dashed chord joins zero-shot and fine-tuned, where mixing the two models' "
                     "answers would land. Points above it are what interpolating weights buys. The star is the "
                     "paper's choice: the alpha with the best average of patch and supported accuracy on "
                     "validation data. The red circle is the curve at the slider, the red x the live subsample "
                     "(it can sit off the curve: it is measured on fewer images). Hover over each alpha in the "
                     "interactive frontier below the samples.")
    else:
        left.info(f"No sweep yet for this run: `python -m paint_core sweep --run {path} --supported shapes,colours`")
    right.markdown(f"**Samples of {patch_task}: zero-shot vs alpha = {alpha:g}**")
    captions = []
    for i in range(n_samples):
        label = sample_labels[i]
        zs_pred = names[int(session.zero_shot_probs[patch_task][i].argmax())]
        now = names[int(probs[patch_task][i].argmax())]
        captions.append(f"true {names[label]} | zs {zs_pred} | now {now} ({'right' if now == names[label] else 'WRONG'})")
    # one element for the grid (less to send and redraw per move); PNG as given ("auto" re-encodes it as JPEG)
    right.image(thumbs, caption=captions, width=110, output_format="PNG")

alpha_view()
if f is not None:
    st.plotly_chart(figures.frontier_figure(f, patch_task, chosen=chosen, split=split), key="frontier")
    st.caption("The frontier again, interactive: hover over a point for its alpha (the slider's marker is in the "
               "picture above, which a move redraws far more cheaply than this chart).")
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
