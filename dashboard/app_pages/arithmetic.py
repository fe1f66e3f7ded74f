"""Task arithmetic: a coefficient slider per task vector, a merge method, live accuracies; the study's results."""
from __future__ import annotations

import contextlib

import pandas as pd
import streamlit as st

from dashboard import figures, opened_runs, study_results
from dashboard.explorer import coefficients as coefficients_explorer
from dashboard.widgets import method_widgets
from paint_core.core.methods import MERGE_METHODS
from paint_core.data.embedded import SUPPORTED_TASKS
from paint_core.live.sessions import slider_neighbours

COEFFICIENT_RANGE, COEFFICIENT_STEP = (-1.5, 2.0), 0.1
# computed ahead, nearest first: every setting one slider's move reaches from the current one (its whole line);
# each takes ~0.6 s of one core on micro-rn-l, so a class finds the steps it moves to already there
PREFETCH_REACH = round((COEFFICIENT_RANGE[1] - COEFFICIENT_RANGE[0]) / COEFFICIENT_STEP)

st.title("Task arithmetic: add, negate and merge task vectors")
st.caption("theta = theta_zero-shot + merge(c_1 tau_1, ..., c_n tau_n), tau = fine-tuned minus zero-shot image "
           "encoder. A negative coefficient forgets a task. "
           + " ".join(f"**{m.name}**: {m.help}." for m in MERGE_METHODS.values()))

runs = opened_runs.available_runs()
by_model: dict[str, dict[str, str]] = {}
for label, path in runs.items():
    model, _, task = label.rpartition("/")
    by_model.setdefault(model, {})[task] = path
if not by_model:
    st.warning("No run found. Make some with `python -m paint_core finetune ...` or on the Models & runs page.")
    st.stop()
model = st.selectbox("Model", list(by_model), key="ta_model")
available = by_model[model]
default = [t for t in ("digits", "counting", "typographic") if t in available] or list(available)[:2]
tasks = st.multiselect("Task vectors (one run each)", list(available), default=default, key="ta_tasks")
if not tasks:
    st.info("Choose at least one task vector.")
    st.stop()
paths = tuple(available[t] for t in tasks)
eval_tasks = tuple(dict.fromkeys([*tasks, *[s for s in SUPPORTED_TASKS if s not in tasks]]))
try:
    session = study_results.session_edit(paths, eval_tasks)
except (ValueError, FileNotFoundError, RuntimeError) as e:
    st.error(f"Cannot combine these runs: {e}")
    st.stop()

EXPLORER_KEY = "ta_explorer"
# what sessions share is keyed by these runs; a report from the browser about other runs is ignored
RUNS_IDENTITY = "|".join(paths)


def coefficient_key(task: str) -> str:
    return f"ta_coef_{task}"


def take_reported_coefficients() -> None:
    """The browser's explorer reports its coefficients after a move: they become this session's coefficients."""
    reported = (st.session_state.get(EXPLORER_KEY) or {}).get("coefficients")
    values = coefficients_explorer.reported_values(reported, RUNS_IDENTITY, len(tasks), COEFFICIENT_RANGE,
                                                   COEFFICIENT_STEP)
    for t, v in zip(tasks, values or ()):
        st.session_state[coefficient_key(t)] = v


@st.fragment
def live_edit() -> None:
    """The sliders and the accuracies they give, drawn by the browser from every setting computed along the
    sliders; the server reruns only this block, when the browser reports its coefficients or asks for more."""
    method = st.selectbox("Merge method", list(MERGE_METHODS), key="ta_method")
    params = method_widgets(MERGE_METHODS[method], "ta")
    coefficients = {t: float(st.session_state.get(coefficient_key(t), 0.3)) for t in tasks}
    learns = MERGE_METHODS[method].learns
    st.subheader("Live accuracy (test subsample)")
    known = session.knows(coefficients, method, **params)
    if not learns or known or st.session_state.get("ta_learn"):
        with st.spinner(f"Merging with {method}...") if learns else contextlib.nullcontext():
            acc = session.accuracies(coefficients, method, **params)
        st.caption(f"Task vectors: {', '.join(tasks)}; controls: "
                   f"{', '.join(t for t in acc if t not in tasks) or 'none'}. First "
                   f"{len(session.eval_sets[next(iter(acc))].labels)} test images of each task; the change against "
                   "zero-shot in points.")
    if not learns:  # the next steps along each slider, computed while the class reads this answer
        session.prefetch(slider_neighbours(coefficients, COEFFICIENT_STEP, *COEFFICIENT_RANGE, reach=PREFETCH_REACH),
                         method, **params)
    n_by_task = {t: len(e.labels) for t, e in session.eval_sets.items()}
    computed = coefficients_explorer.on_slider_lines(session.computed(method, **params), coefficients.values())
    settings = {coefficients_explorer.setting_key(values): coefficients_explorer.setting_entry(
        acc, session.zero_shot, tasks, n_by_task) for values, acc in computed.items()}
    identity = f"{RUNS_IDENTITY}#{method}#{sorted(params.items())}"
    data = coefficients_explorer.payload(identity, tasks, list(coefficients.values()), settings, COEFFICIENT_STEP,
                                         COEFFICIENT_RANGE, learns)
    coefficients_explorer.coefficient_explorer(data, key=EXPLORER_KEY, on_change=take_reported_coefficients)
    if learns and not session.knows(coefficients, method, **params):
        st.info(f"{method} learns from the runs' data (statistics on their train images, cached on disk once "
                "computed; AdaMerging also trains its coefficients): it runs when asked, from seconds to "
                "minutes on a CPU.")
        st.button(f"Compute the {method} merge", key="ta_learn")


live_edit()

st.subheader("The study on the full splits (lambda chosen on val, test accuracy)")
study = study_results.study("arithmetic", key="ta_study_model")
if study:
    rows = [{"merge": name, "lambda": r.lam,
             **{f"{t} %": round(100 * r.test[t], 1) for t in study.tasks},
             **{f"{s} %": round(100 * r.test[s], 1) for s in study.supported},
             "mean absolute %": round(100 * r.mean_absolute_test, 1),
             "mean normalized %": round(100 * r.mean_normalized_test, 1)} for name, r in study.addition.items()]
    st.markdown("**Addition** (normalized = accuracy / the task's own fine-tuned accuracy: "
                + ", ".join(f"{k} {100 * v:.1f}%" for k, v in study.finetuned.items() if k.endswith("/test")) + ")")
    st.dataframe(pd.DataFrame(rows), key="ta_addition", hide_index=True)
    if study.addition:
        pick = st.selectbox("Lambda curve of", list(study.addition), key="ta_curve")
        st.plotly_chart(figures.lambda_figure(study.addition[pick].val_sweep, "normalized"), key="ta_lambda_chart")
    if study.negation:
        st.markdown("**Negation** (lambda: the lowest target accuracy keeping control >= 95% of zero-shot, on val)")
        st.dataframe(figures.negation_table(study.negation), key="ta_negation", hide_index=True)
