"""Typographic attack: write a word on an image and compare zero-shot and patched predictions."""
from __future__ import annotations

import numpy as np
import streamlit as st

from dashboard import figures, state
from paint_core.data import world
from paint_core.live.sessions import compare_predictions, parse_classnames
from paint_core.data.tasks import SHAPE_TEMPLATES

st.title("Typographic attack")
st.caption("A word written on an object can fool CLIP. Compose an object or upload a photo, write a word on it, "
           "and compare the zero-shot model with the model patched on the typographic task.")

session = state.open_session(default_task="typographic", key="typo_run")
chosen = state.chosen_alpha(str(session.run.path))

left, right = st.columns([1, 2])
with left:
    source = st.radio("Image", ["Compose", "Upload"], horizontal=True, key="typo_source")
    base = None
    if source == "Compose":
        shape = st.selectbox("Object", world.SHAPES, key="typo_shape")
        colour = st.selectbox("Colour", list(world.COLOURS), key="typo_colour")
        seed = st.number_input("Scene seed", 0, 10_000, 0, key="typo_seed")
        base = world.render_object(np.random.default_rng(int(seed)), shape, colour, radius=(0.3, 0.34))
    else:
        base = state.uploaded_image("typo_upload")
    word = st.text_input("Word to write", "star", key="typo_word")
    position = st.selectbox("Where", world.WORD_POSITIONS, key="typo_position")
    size = st.slider("Text height (fraction of the image)", 0.05, 0.5, 0.22, 0.01, key="typo_size")
    alpha = st.slider("alpha of the patched model", 0.0, 1.0, float(chosen if chosen is not None else 0.5), 0.05,
                      key="typo_alpha")
    class_text = st.text_area("Classes (one per line: open vocabulary)", "\n".join(world.SHAPES), key="typo_classes")

if base is None:
    right.info("Compose an image or upload one.")
    st.stop()
try:
    classnames = parse_classnames(class_text)
except ValueError as e:
    right.error(str(e))
    st.stop()

attacked = world.write_word(base, word, position, size)
session.set_alpha(alpha)
models = {"zero-shot": session.run.model, f"patched (alpha {alpha:g})": session.model}
with right:
    for title, img, key in (("Without the word", base, "typo_clean"), (f"With the word “{word}”", attacked, "typo_attacked")):
        st.markdown(f"**{title}**")
        c1, c2 = st.columns([1, 3])
        c1.image(img.resize((160, 160)), caption=title)
        table = compare_predictions(models, session.run.preprocess, session.run.tokenizer, img, classnames,
                                    SHAPE_TEMPLATES, head_model=session.run.model)
        c2.dataframe(table, hide_index=True, key=f"{key}_table")
        c2.plotly_chart(figures.probability_bars(table, list(models)), key=f"{key}_bars")
