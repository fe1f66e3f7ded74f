"""WiSE-FT: weight- vs output-space ensembles of zero-shot and fine-tuned, judged on distribution shifts."""
from __future__ import annotations

import streamlit as st

from dashboard import figures, study_results, text

st.title("WiSE-FT: robustness to distribution shift")
st.caption("The weight-space ensemble is PAINT's interpolation; the output-space ensemble mixes the two models' "
           "logits. Points above the dashed line joining the endpoints have effective robustness.")
study = study_results.study("wiseft", key="wf_model")
if study:
    shift = st.selectbox("Shifted task", list(study.shift_tasks), key="wf_shift")
    st.plotly_chart(figures.wiseft_figure(study.rows, study.id_task, shift), key="wf_chart")
    summary = study.summary_test[shift]
    st.markdown("**What it shows:** " + text.wiseft_conclusion(summary, shift, study.id_task))
    st.dataframe(figures.wiseft_table(summary), key="wf_table", hide_index=True)
    st.caption(f"shift: accuracy (%) on {shift}; above the line: the most points an ensemble lies above the straight "
               "line joining the endpoints (effective robustness).")
