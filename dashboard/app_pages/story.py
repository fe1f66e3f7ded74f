"""Start here: PAINT's story in five steps on the embedded default, every number read from its cached sweep."""
from __future__ import annotations

import streamlit as st

from dashboard import figures, opened_runs
from paint_core.core.frontier import frontier
from paint_core.io.paths import CACHED_RESULTS_DIR
from paint_core.studies.patch import patch_story

RUN = CACHED_RESULTS_DIR / "micro-rn-l" / "digits"

st.title("Patching a model that gets one task wrong")
st.caption("Five steps, on the embedded micro CLIP (trained by this project on a procedural world of shapes, colours "
           "and counts) and real handwritten digits it never saw. Every number below is read from the cached sweep "
           f"({RUN.relative_to(CACHED_RESULTS_DIR.parent)}), on its test split.")
story = patch_story(RUN)
df = opened_runs.sweep_of(str(RUN))
pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
zs, ft, ch = story["zero_shot"], story["fine_tuned"], story["chosen"]
supported = " and ".join(story["supported"])

st.header("1. The problem")
st.markdown(f"A CLIP-style model classifies anything you can name: it names **{supported}** right "
            f"{pct(zs['supported'])} of the time with no training at all (zero-shot). But on **{story['patch']}** it "
            f"gets only **{pct(zs['patch'])}**. The tasks the model must keep doing well are the *supported* tasks; the "
            f"one it gets wrong is the *patch* task.")
c = st.columns(2)
c[0].metric(f"{story['patch']}, zero-shot", pct(zs["patch"]))
c[1].metric(f"{supported}, zero-shot", pct(zs["supported"]))

st.header("2. Fine-tuning fixes it, at a cost to the rest")
st.markdown(f"Fine-tune the image encoder on {story['patch']} (the text side, which names the classes, stays "
            f"frozen): {story['patch']} rises to **{pct(ft['patch'])}**, but {supported} fall to "
            f"**{pct(ft['supported'])}**. The model has forgotten part of what it knew.")
c = st.columns(2)
c[0].metric(f"{story['patch']}, fine-tuned", pct(ft["patch"]), f"{100 * (ft['patch'] - zs['patch']):+.1f} points")
c[1].metric(f"{supported}, fine-tuned", pct(ft["supported"]), f"{100 * (ft['supported'] - zs['supported']):+.1f} points")

st.header("3. Interpolate the weights")
st.markdown("PAINT mixes the two sets of weights: theta(alpha) = (1 - alpha) x zero-shot + alpha x fine-tuned. "
            "alpha = 0 is the original model, alpha = 1 the fine-tuned one; every alpha in between is a model too. "
            "Each task's accuracy along alpha:")
st.plotly_chart(figures.accuracy_vs_alpha_figure(df, story["split"], story["chosen_alpha"]), key="story_alpha")

st.header("4. The frontier bends")
st.markdown("Plot the patch task's accuracy against the supported tasks' for every alpha. If mixing weights were "
            "no better than mixing the two models' answers, the points would lie on the straight dashed line (the "
            f"chord) between the endpoints. They lie above it: at the chosen alpha the model is "
            f"**{100 * story['above_chord']:.1f} points** better on the supported tasks than the chord promises.")
f = frontier(df, story["patch"], story["supported"], story["split"])
st.plotly_chart(figures.frontier_figure(f, story["patch"], chosen=story["chosen_alpha"], split=story["split"]),
                key="story_frontier")

st.header("5. Choose alpha on held-out data")
st.markdown(f"The paper's rule: take the alpha with the best average of the patch accuracy and the supported "
            f"accuracy on *validation* data (never the test data). Here that is **alpha = {story['chosen_alpha']:g}**: "
            f"{story['patch']} **{pct(ch['patch'])}** (from {pct(zs['patch'])}) while {supported} stay at "
            f"**{pct(ch['supported'])}** (from {pct(zs['supported'])}).")
c = st.columns(3)
c[0].metric("chosen alpha", f"{story['chosen_alpha']:g}")
c[1].metric(f"{story['patch']}, patched", pct(ch["patch"]), f"{100 * (ch['patch'] - zs['patch']):+.1f} points")
c[2].metric(f"{supported}, patched", pct(ch["supported"]), f"{100 * (ch['supported'] - zs['supported']):+.1f} points")
st.info("Now move the slider yourself on the **Patch** page; see a written word fool the model on **Typographic "
        "attack**; the other pages show PAINT's relatives (multi-task patching, WiSE-FT, task arithmetic, ...).")
