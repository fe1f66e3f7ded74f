"""Closed-vocabulary task addition: a lambda slider over micro-vit's task vectors, the probe baseline, xi maps."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import figures, study_results

st.title("Task addition in a closed-vocabulary model")
st.caption("An image encoder with one linear head per task (no text tower). Each head is aligned first by a "
           "linear probe, then frozen while the encoder is fine-tuned; theta = theta_pre + lambda * sum of the "
           "encoder task vectors, and every task is read by its own head.")
study = study_results.closed_vocab_study()
if study is None:
    st.stop()
tasks = list(study.tasks)
session = study_results.session_addition(tasks)
lam = st.slider("lambda (one coefficient for every task vector)", 0.0, 1.5, study.lam, step=0.1,
                key="cv_lambda", help=f"chosen on val: {study.lam:g}")
acc = session.accuracies(lam)
cols = st.columns(len(tasks))
for col, t in zip(cols, tasks):
    ft = study.finetuned_test[t]
    col.metric(f"{t} (n={len(session.data[t][1])})", f"{100 * acc[t]:.1f}%",
               f"normalized {100 * acc[t] / ft:.1f}% of fine-tuned", delta_color="off")
st.caption("Live on a test subsample; normalized = accuracy / the task's own fine-tuned accuracy on the full test split.")

st.subheader("Task addition vs linear probing (full test split)")
table = pd.DataFrame([{"task": t, "linear probe %": 100 * study.probe_test[t],
                       f"task addition (lambda {study.lam:g}) %": 100 * study.addition_test[t],
                       "own fine-tuned %": 100 * study.finetuned_test[t]} for t in tasks]).round(1)
st.dataframe(table, key="cv_table", hide_index=True)
st.markdown(f"Mean normalized accuracy: task addition **{100 * study.addition_mean_normalized:.1f}%**, "
            f"linear probe **{100 * study.probe_mean_normalized:.1f}%** (absolute "
            f"{100 * study.addition_mean_absolute:.1f}% vs {100 * study.probe_mean_absolute:.1f}%).")

st.subheader("Weight disentanglement")
maps = study_results.disentanglement_maps(study)
which = st.radio("Model", list(maps), horizontal=True, key="cv_map")
m = maps[which]
st.plotly_chart(figures.disentanglement_heatmap(m.error, m.grid, m.tasks, which), key="cv_heatmap")
st.caption("xi = for each of the two tasks, the fraction of its inputs whose prediction under the combined edit "
           "differs from the prediction under that task's edit alone, summed. Low (dark) = disentangled.")
