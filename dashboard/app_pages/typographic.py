"""Typographic attack: write a word on an image and compare zero-shot and patched predictions."""
from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import figures, opened_runs, serving, text, widgets
from dashboard import typographic_answers as answers
from dashboard.explorer import charts
from dashboard.policy import check_pretrained, check_task, policy
from paint_core.data import world
from paint_core.data.embedded import SHAPE_TEMPLATES
from paint_core.data.tasks import get_task
from paint_core.data.typographic import SCAM_PARTS, unpack_typographic_zip
from paint_core.engine.attack import CONTROL_WORDS, batch_attack
from paint_core.engine.evaluation import materialize, zero_shot_head
from paint_core.io.uploads import ZipLimits, release_uploads
from paint_core.io.writes import WriteRefused
from paint_core.live.sessions import SLIDER_ALPHAS, parse_classnames

# The shipped micro CLIP that reads (scripts/ship_reading_model.py), patched on the typographic task: the
# default models barely read, so on them the demo would show no attack.
READING_RUN = "reading/typographic"
ZIP_LIMITS = ZipLimits()  # what a batch zip may hold (the engine's defaults)
WORD_READING_AUTO_PX = 64  # models up to this input size show which words they read at once (a few seconds)

st.title("Typographic attack")
st.caption("A word written on an object can fool CLIP. Compose an object or upload a photo, write a word on it, "
           "and compare the zero-shot model with the model patched on the typographic task.")

mode = st.radio("Model", ["A patched run", "Zero-shot only (no run)"], horizontal=True, key="typo_mode",
                help="Zero-shot only: inspect any open_clip model's robustness before patching anything.")
session = None
if mode == "A patched run":
    session = opened_runs.open_session(default_task="typographic", key="typo_run", prefer=READING_RUN)
    model0, preprocess, tokenizer = session.run.model, session.run.preprocess, session.run.tokenizer
    chosen = opened_runs.chosen_alpha(str(session.run.path))
    opened_runs.follow_run(str(session.run.path), "typo_alpha", chosen, 0.5)
    example = answers.fooling_example(str(session.run.path), chosen if chosen is not None else 0.5)
    # open each run once on an attack its patch fixes; a marker of our own, not a widget's state (Streamlit drops
    # a widget's state while it is not drawn: in Upload mode the Object selector's, so the word was re-seeded)
    if example is not None and st.session_state.get("typo_seeded") != str(session.run.path):
        st.session_state.update({"typo_shape": example["shape"], "typo_colour": example["colour"],
                                 "typo_seed": example["seed"], "typo_word": example["word"],
                                 "typo_seeded": str(session.run.path)})
else:
    z1, z2 = st.columns(2)
    zs_name = z1.text_input("open_clip model", "micro-rn-l", key="typo_zs_model")
    zs_pretrained = z2.text_input("pretrained tag or checkpoint file (empty: shipped weights)", "",
                                  key="typo_zs_pretrained")
    try:
        name = answers.check_offered(zs_name.strip())
        zs_weights = check_pretrained(policy(), name, zs_pretrained)
        model0, preprocess, tokenizer = answers.shared_model(name, zs_weights)
        if not zs_pretrained.strip():
            st.caption(f"{zs_name.strip()}: the shipped weights")
    except (WriteRefused, ValueError, OSError) as e:
        st.error(f"Cannot load this model: {e}")
        st.stop()
    chosen = None

# Which class words the opened model reads (issue 32), first: a word it does not read shows no attack. Measured
# once per model (state caches it); a model bigger than the micro ones measures only when asked (slow on a CPU).
input_size = model0.visual.image_size
st.subheader("Which words this model reads")
if session is None and max(np.atleast_1d(input_size)) > WORD_READING_AUTO_PX and not st.checkbox(
        "Measure it (a minute or more for a large model on a CPU)", key="typo_measure_words"):
    st.caption("Not measured yet for this model.")
else:
    reading = (answers.run_word_reading(str(session.run.path)) if session is not None
               else answers.model_word_reading(name, zs_weights))
    st.dataframe(figures.word_rate_row(reading["rates"]), hide_index=True, key="typo_word_rates")
    st.caption(text.reading_note(reading["summary"]))
    with st.expander("Per ink and place"):
        st.dataframe(figures.word_rate_detail(reading["rates"]), hide_index=True, key="typo_word_rates_detail")

left, right = st.columns([1, 2])
with left:
    source = st.radio("Image", ["Compose", "Upload"], horizontal=True, key="typo_source")
    base = None
    if source == "Compose":
        shape = st.selectbox("Object", world.SHAPES, key="typo_shape")
        colour = st.selectbox("Colour", list(world.COLOURS), key="typo_colour")
        seed = st.number_input("Scene seed", 0, 10_000, key="typo_seed")  # default: its minimum, 0
        base = world.render_object(np.random.default_rng(int(seed)), shape, colour, radius=(0.3, 0.34))
    else:
        base = widgets.uploaded_image("typo_upload")
        carries_word = st.checkbox("The photo already carries a written word", False, key="typo_upload_word")
    st.session_state.setdefault("typo_word", "star")  # set once here, not as the widget's default: no conflict
    word = st.text_input("Word to write", key="typo_word")  # with a seeded value
    position = st.selectbox("Where", world.WORD_POSITIONS, key="typo_position")
    size = st.slider("Text height (fraction of the image)", 0.05, 0.5, 0.22, 0.01, key="typo_size")
    alpha = st.slider("alpha of the patched model", 0.0, 1.0, float(chosen if chosen is not None else 0.5), 0.05,
                      key="typo_alpha") if session is not None else None
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
warning = text.photo_warning(input_size) if source == "Upload" else None
if warning:
    right.warning(warning)
names = ["zero-shot"]
if session is not None:
    session.set_alpha(alpha)
    names.append(f"patched (alpha {alpha:g})")
# what the page's models are, for the answers shared between sessions (dashboard/typographic_answers.py)
models_key = (f"{session.run.path}|{session.run.weights_sha256}|alpha={alpha:g}" if session is not None
              else f"{name}|{zs_weights}")


@contextlib.contextmanager
def page_models():
    """The page's models by name; the patched one is borrowed from the run's pool for the block only."""
    if session is None:
        yield {"zero-shot": model0}
    else:
        with session.patched_model() as patched:
            yield {"zero-shot": model0, names[1]: patched}


zero_shot_key = (f"{session.run.path}|{session.run.weights_sha256}" if session is not None
                 else f"{name}|{zs_weights}")
head = answers.head(zero_shot_key, tuple(classnames), tuple(SHAPE_TEMPLATES), model0, tokenizer)
x_clean, x_attacked = preprocess(base.convert("RGB")), preprocess(attacked.convert("RGB"))
images = (answers.image_key(base), answers.image_key(attacked))
shown = {}  # the top-5 tables, by image; the verdict reads the attacked one's first row
with right:
    titles = text.image_titles(source, word, source == "Upload" and carries_word)
    for title, img, x, image, key in zip(titles, (base, attacked), (x_clean, x_attacked), images,
                                         ("typo_clean", "typo_attacked")):
        st.markdown(f"**{title}**")
        c1, c2 = st.columns([1, 3])
        c1.image(figures.fit_image(img, 160), caption=title)
        table = shown[key] = answers.top_tables(models_key, image, tuple(classnames), page_models, head, x)
        c2.dataframe(table, hide_index=True, key=f"{key}_table", column_config=text.prediction_columns(names))

if not word.strip():
    st.stop()
true_name = st.selectbox("True class of the image", classnames,
                         index=classnames.index(st.session_state.get("typo_shape", classnames[0]))
                         if st.session_state.get("typo_shape") in classnames else 0, key="typo_true")
true_idx = classnames.index(true_name)
written_idx = classnames.index(word) if word in classnames else None
top = shown["typo_attacked"].iloc[0]
verdict = text.verdict(top[f"{names[0]} class"], true_name, word,
                       *((top[f"{names[1]} class"], alpha) if session is not None else ()))
st.markdown(f"**Verdict:** {verdict}.", help="On the image with the word; the true class is chosen below the image. "
            "Fooled: the model names the written word; a wrong answer that is not the word is a plain error.")

st.subheader("Word sweep")
st.caption("Each cell: the word written at that place and height, coloured by the true class's probability, "
           "labelled with the predicted class. Rows: the class names, your word and neutral control words.")
extra = st.text_input("More words to try (comma-separated)", "", key="typo_extra")
words = list(dict.fromkeys([*classnames, word, *CONTROL_WORDS, *[w.strip() for w in extra.split(",") if w.strip()]]))
cols = st.columns(2)
tables = answers.word_sweeps(models_key, images[0], tuple(classnames), true_idx, tuple(words), page_models, head,
                             preprocess, base)
for col, name in zip(cols, names):
    with col:
        charts.chart(charts.word_sweep_grid(tables[name], name), key=f"typo_sweep_{name.split()[0]}")
sweep_csv = pd.concat([t.assign(model=n) for n, t in tables.items()]).to_csv(index=False)
st.download_button("Word sweep as CSV", sweep_csv, file_name="word_sweep.csv", mime="text/csv", key="typo_sweep_csv")

st.subheader("Margin along alpha")
if session is None:
    st.info("The margin along alpha needs a patched run: choose “A patched run” above.")
elif written_idx is None:
    st.info(f"“{word}” is not one of the classes: the margin is the true class against a written class.")
else:
    run = session.run
    margins = answers.margins(f"{run.path}|{run.weights_sha256}", images, tuple(classnames), true_idx, written_idx,
                              tuple(SLIDER_ALPHAS), run, head, {"clean": x_clean, "attacked": x_attacked})
    charts.chart(charts.margin_lines(margins, alpha), key="typo_margin")
    resist = margins[(margins["image"] == "attacked") & (margins["margin"] > 0)]["alpha"]
    st.caption(f"The patched model names the true class over “{word}” from alpha {resist.min():g}."
               if len(resist) else f"At no alpha does the model name the true class over “{word}”.")
    st.download_button("Margins as CSV", margins.to_csv(index=False), file_name="margins.csv", mime="text/csv",
                       key="typo_margin_csv")

st.subheader("Where the model looks")
st.caption("Grad-CAM for ResNet towers (the deepest stage with a map of at least 6 x 6: layer2 on the 48 and 64 px "
           "micro models, so the map is coarse), attention rollout for ViTs, for the true class, over the square the model "
           "sees (in grey): yellow is where the evidence is, dark purple where there is none.")
sal_cols = st.columns(4)
cams = answers.saliency_maps(models_key, images, tuple(classnames), true_idx, page_models, head,
                             {"clean": x_clean, "attacked": x_attacked})
for i, name in enumerate(names):
    for j, (label, img) in enumerate((("clean", base), ("attacked", attacked))):
        sal_cols[2 * i + j].image(figures.saliency_overlay(img, cams[(name, label)]), caption=f"{name}, {label}")

st.subheader("Batch: accuracy and attack success before and after the patch")
st.caption("Score a whole set of attacked images: the embedded typographic test set, a folder under the server's "
           "data folders, or a zip. Layouts: PAINT's label=<class>_text=<word>.png files; RTA-100 (its zip, or the "
           "folder it unpacks to; the written words are classes too, as its authors score it); SCAM (its parquet "
           "files or an image folder with its metadata.csv; part SCAM, SynthSCAM or NoSCAM). "
           "Attack success: among images whose written word is another class, the share classified as the word.")
server = policy()
b1, b2 = st.columns([2, 1])
batch_source = b1.radio("Images", ["Embedded test set", "Folder", "Zip"], horizontal=True, key="typo_batch_src")
batch_n = int(b2.number_input("At most this many images", 10, server.max_eval, min(300, server.max_eval), 10,
                              key="typo_batch_n"))
spec = "typographic" if batch_source == "Embedded test set" else None
layouts = {"PAINT": "typographic:", "RTA-100": "rta100:", "SCAM": "scam:"}
if batch_source != "Embedded test set":
    l1, l2 = st.columns([2, 1])
    layout = l1.radio("Layout", list(layouts) if batch_source == "Folder" else ["PAINT", "RTA-100"],
                      horizontal=True, key="typo_batch_layout")
    part = l2.selectbox("SCAM part", SCAM_PARTS, key="typo_batch_part") if layout == "SCAM" else None
if batch_source == "Folder":
    folder = st.text_input("Folder", "", key="typo_batch_folder", placeholder="/data/rta100")
    if folder.strip():
        try:
            spec = check_task(server, layouts[layout] + folder.strip() + (f"?part={part}" if part else ""))
        except (WriteRefused, ValueError) as e:
            st.error(str(e))
zip_upload = None
if batch_source == "Zip" and server.read_only:
    st.info("Zip uploads are switched off on this read-only server (PAINT_READ_ONLY): score the embedded set or "
            "a folder under the server's data folders.")
elif batch_source == "Zip":
    zip_upload = st.file_uploader("Zip of label=<class>_text=<word>.png images", type=["zip"], key="typo_batch_zip",
                                  help=f"At most {ZIP_LIMITS.max_files:,} images, "
                                       f"{ZIP_LIMITS.max_file_bytes // 2 ** 20} MB each, "
                                       f"{ZIP_LIMITS.max_total_bytes // 2 ** 20} MB in all.")
    if zip_upload is not None:
        try:
            spec = layouts[layout] + str(unpack_typographic_zip(zip_upload.getvalue(), serving.uploads_root(),
                                                               serving.session_id()))
        except ValueError as e:
            st.error(f"Cannot use this zip: {e}")
if zip_upload is None and not server.read_only:
    release_uploads(serving.uploads_root(), serving.session_id())  # this session's unpacked zip is no longer needed
if spec is not None and st.button("Score the set", key="typo_batch_go"):
    try:
        task = get_task(spec)
        data = materialize(task.split("test", preprocess), batch_n)
        written = task.written_class("test")[:len(data)]
        batch_head = zero_shot_head(model0, tokenizer, task.classnames, task.templates)
        with page_models() as models:
            summary, per_image = batch_attack(models, batch_head, data, written)
        last = names[-1]
        raw = task.split("test", None)  # the worst images kept now: an unpacked zip may be released later
        worst = []
        for r in per_image.sort_values(f"{last} p_true").head(8).to_dict("records"):
            said = ", ".join(f"{name.split()[0]} {task.classnames[int(r[f'{name} predicted'])]}" for name in names
                             if f"{name} predicted" in r)
            worst.append((raw[int(r["index"])][0].resize((96, 96)), f"{task.classnames[int(r['label'])]}; {said}"))
        st.session_state["typo_batch"] = (summary, per_image, last, worst)
    except (ValueError, OSError) as e:
        st.error(f"Cannot score this set: {e}")
if "typo_batch" in st.session_state:
    summary, per_image, last, worst = st.session_state["typo_batch"]  # as scored
    shown = summary.assign(accuracy=(100 * summary["accuracy"]).round(1),
                           attack_success=(100 * summary["attack_success"].astype(float)).round(1))
    st.dataframe(shown.rename(columns={"accuracy": "accuracy (%)", "attack_success": "attack success (%)"}),
                 hide_index=True, key="typo_batch_summary")
    st.markdown(f"**Worst examples for the {last} model** (lowest probability of the true class)")
    for col, (thumb, caption) in zip(st.columns(8), worst):
        col.image(thumb, caption=caption)
    st.download_button("Per-image results as CSV", per_image.to_csv(index=False), file_name="typographic_batch.csv",
                       mime="text/csv", key="typo_batch_csv")
