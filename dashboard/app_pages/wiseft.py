"""WiSE-FT: weight- vs output-space ensembles of zero-shot and fine-tuned, judged on distribution shifts."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import figures, state, text

st.title("WiSE-FT: robustness to distribution shift")
st.caption("The weight-space ensemble is PAINT's interpolation; the output-space ensemble mixes the two models' "
           "logits. Points above the dashed line joining the endpoints have effective robustness.")
doc = state.study("wiseft", key="wf_model")
if doc:
    result = doc["results"]
    shift = st.selectbox("Shifted task", doc["inputs"]["shift_tasks"], key="wf_shift")
    rows = pd.DataFrame(result["rows"])
    st.plotly_chart(figures.wiseft_figure(rows, result["id_task"], shift), key="wf_chart")
    summary = result["summary_test"][shift]
    st.markdown("**What it shows:** " + text.wiseft_conclusion(summary, shift, result["id_task"]))
    st.dataframe(figures.wiseft_table(summary), key="wf_table", hide_index=True)
    st.caption(f"shift: accuracy (%) on {shift}; above the line: the most points an ensemble lies above the straight "
               "line joining the endpoints (effective robustness).")
