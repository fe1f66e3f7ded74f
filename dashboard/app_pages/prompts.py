"""Prompt compatibility: CoOp and ContCoOp prompts learned on an old model, plugged into an upgraded one."""
from __future__ import annotations

import streamlit as st

from dashboard import figures, study_results

st.title("Prompts across a model update: CoOp vs ContCoOp")
st.caption("Prompts are learned on the old model (few shots per class, encoders frozen), then used on the upgraded "
           "model without retraining ('transferred'), next to prompts retrained on the upgraded model.")
study = study_results.prompt_study()
if study is None:
    st.stop()
rows = study.rows
st.markdown(f"Old model **{study.old}**, upgraded model **{study.new}**.")
c1, c2 = st.columns(2)
task = c1.selectbox("Task", list(dict.fromkeys(rows["task"])), key="pr_task")
shots = c2.selectbox("Shots per class", sorted(rows["shots"].unique().tolist()), key="pr_shots")
sub = rows[(rows["task"] == task) & (rows["shots"] == shots)]
st.plotly_chart(figures.prompt_bars(sub), key="pr_chart")
summary = (sub.groupby("method", sort=False)["accuracy"].agg(["mean", "min", "max", "count"]) * [100, 100, 100, 1])
st.dataframe(summary.round(1).rename(columns={"count": "seeds"}), key="pr_table")
