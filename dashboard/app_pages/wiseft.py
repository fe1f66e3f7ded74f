"""WiSE-FT: weight- vs output-space ensembles of zero-shot and fine-tuned, judged on distribution shifts."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import figures, state

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
    table = pd.DataFrame([{"ensemble": name, "zero-shot shifted %": 100 * s["zero_shot"]["shift"],
                           "fine-tuned shifted %": 100 * s["finetuned"]["shift"],
                           "best shifted %": 100 * s["best_shift"], "at alpha": s["best_shift_alpha"],
                           "beats both endpoints": s["beats_both_endpoints_on_shift"],
                           "max points above the line": 100 * s["max_effective_robustness"]}
                          for name, s in summary.items()]).round(1)
    st.dataframe(table, key="wf_table", hide_index=True)
