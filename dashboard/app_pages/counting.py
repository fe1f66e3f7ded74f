"""Counting: zero-shot vs patched counts for one image, and accuracy per true count on a subsample."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import figures, opened_runs, text, widgets
from paint_core.data import world
from paint_core.live.sessions import compare_predictions, per_class_accuracy
from paint_core.data.tasks import get_task

st.title("Counting")
st.caption("CLIP-style models are poor at counting objects. Compose a scene (or upload one) and compare how many "
           "objects the zero-shot model and the model patched on counting see; below, accuracy per true count "
           "and one test image followed along alpha.")
session = opened_runs.open_session(default_task="counting", key="count_run")
chosen = opened_runs.chosen_alpha(str(session.run.path))
opened_runs.follow_run(str(session.run.path), "count_alpha", chosen, 0.5)
task = get_task("counting")

left, right = st.columns([1, 2])
with left:
    source = st.radio("Image", ["Compose", "Upload"], horizontal=True, key="count_source")
    image = None
    if source == "Compose":
        n = st.slider("Number of objects", 1, world.MAX_COUNT, 3, key="count_n")
        mixed = st.checkbox("Mixed shapes and colours", True, key="count_mixed")
        seed = st.number_input("Scene seed", 0, 10_000, 0, key="count_seed")
        rng = np.random.default_rng(int(seed))
        shapes = tuple(rng.choice(world.SHAPES, n)) if mixed else ("circle",)
        colours = tuple(rng.choice(list(world.COLOURS), n)) if mixed else ("yellow",)
        image = world.render_count(rng, n, shapes, colours)
    else:
        image = widgets.uploaded_image("count_upload")
    alpha = st.slider("alpha of the patched model", 0.0, 1.0, float(chosen if chosen is not None else 0.5), 0.05,
                      key="count_alpha")

session.set_alpha(alpha)
with right:
    if image is None:
        st.info("Compose an image or upload one.")
    else:
        warning = text.photo_warning(session.run.model.visual.image_size) if source == "Upload" else None
        if warning:
            st.warning(warning)
        c1, c2 = st.columns([1, 3])
        c1.image(figures.fit_image(image, 160))
        with session.patched_model() as patched:  # borrowed from the run's pool for this one call
            models = {"zero-shot": session.run.model, f"patched (alpha {alpha:g})": patched}
            table = compare_predictions(models, session.run.preprocess, session.run.tokenizer, image,
                                        task.classnames, task.templates, head_model=session.run.model)
        c2.dataframe(table, hide_index=True, key="count_table", column_config=text.prediction_columns(list(models)))

if "counting" in session.eval_sets:
    ev = session.eval_sets["counting"]
    per = pd.DataFrame({
        "zero-shot": per_class_accuracy(session.zero_shot_probs["counting"], ev.labels, ev.classnames)["accuracy"].to_numpy(),
        f"patched (alpha {alpha:g})": per_class_accuracy(session.probabilities()["counting"], ev.labels,
                                                         ev.classnames)["accuracy"].to_numpy()},
        index=list(ev.classnames))
    st.subheader(f"Accuracy per true count (test subsample, n={len(ev.labels)})")
    st.plotly_chart(figures.per_count_figure(per, list(per.columns)), key="per_count")
    st.dataframe((100 * per).round(1), key="per_count_table",
                 column_config={"_index": {"label": "true count"}, **{c: {"label": f"{c}: accuracy %"} for c in per}})
    st.subheader("One test image along alpha")
    raw = task.split("test")
    pick = st.number_input(f"Test image (1-{len(ev.labels)})", 1, len(ev.labels), 1, key="count_pick") - 1
    c1, c2 = st.columns([1, 3])
    c1.image(figures.fit_image(raw[int(pick)][0], 160), caption=f"true count {ev.classnames[int(ev.labels[int(pick)])]}")
    story = session.along_alpha("counting", int(pick))
    c2.plotly_chart(figures.along_alpha_figure(story, ev.classnames[int(ev.labels[int(pick)])], alpha), key="count_story")
    st.download_button("Its probabilities along alpha as CSV", story.to_csv(), file_name="count_along_alpha.csv",
                       mime="text/csv", key="count_story_csv")
else:
    st.info("This run is not a counting run: pick a counting run for the per-count view.")
