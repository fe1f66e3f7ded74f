"""Multi-task patching (joint, sequential, parallel vs specialists) and broad transfer, from the studies' JSON."""
from __future__ import annotations

import streamlit as st

from dashboard import figures, study_results

st.title("Multi-task patching and broad transfer")
st.caption("PAINT section 5: patch several tasks into one model (joint fine-tune on the union, sequential "
           "patches, or parallel fine-tunes averaged), each interpolated with alpha chosen on val. Section 6: "
           "does patching one task help another whose classes it never saw?")

tab_mt, tab_tr = st.tabs(["Multi-task", "Broad transfer"])
with tab_mt:
    study = study_results.study("multitask", key="mt_model")
    if study and study.comparison:
        tasks, sup = study.tasks, study.supported
        rows = study.comparison
        st.plotly_chart(figures.multitask_figure(rows, tasks, sup), key="mt_chart")
        st.dataframe(figures.multitask_table(rows, tasks, sup), key="mt_table", hide_index=True)
        st.caption("Test accuracy (%) per task; alpha chosen on val (sequential: one per step); vs specialists: "
                   "the mean patch accuracy's gap to the specialists' own, in points (pts).")
        best = max((r for r in rows if not r.model.startswith("specialist")), key=lambda r: r.patch_mean, default=None)
        if best:
            st.markdown(f"Best multi-task model on the patch tasks (test): **{best.model}**, mean "
                        f"{100 * best.patch_mean:.1f}% ({100 * best.vs_specialists:+.1f} points vs the "
                        f"specialists), supported {100 * best.supported_mean:.1f}%.")
with tab_tr:
    study = study_results.study("transfer", key="tr_model")
    if study:
        rows = study.rows
        mode = st.radio("Patched model", ["finetuned", "chosen"], horizontal=True, key="tr_mode",
                        format_func=lambda m: "fine-tuned (alpha 1)" if m == "finetuned" else "patched (alpha chosen on val)")
        sub = rows[rows["mode"] == mode]
        st.plotly_chart(figures.transfer_heatmap(sub), key="tr_heatmap")
        st.caption("Cells marked ¤ share class names with the patch task (not a transfer test).")
        disjoint = sub[sub["disjoint_classes"]].sort_values("change", ascending=False)
        st.dataframe(figures.transfer_table(disjoint), key="tr_table", hide_index=True)
        st.caption("Pairs with disjoint classes only, largest change first: accuracy (%) before and after, the change "
                   "in points.")
