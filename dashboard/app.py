"""PAINT Explorer: the entry file is a picture frame (page config, navigation); pages are in app_pages/."""
from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

st.set_page_config(page_title="PAINT Explorer", layout="wide")
if os.environ.get("PAINT_REQUIRE_LOGIN", "").strip() == "1" and not getattr(st.user, "is_logged_in", False):
    # Streamlit's OIDC login, configured in .streamlit/secrets.toml ([auth]; see the README).
    st.title("PAINT Explorer")
    st.info("This dashboard asks you to log in first.")
    st.button("Log in", on_click=st.login, key="login")
    st.stop()
from dashboard.serving import server_runtime  # noqa: E402 (after set_page_config, as Streamlit asks)

try:
    runtime = server_runtime()
except ValueError as e:  # e.g. PAINT_DEVICE=cuda on a machine without CUDA: say so, never fall back silently
    st.error(f"The server's device setting is wrong: {e}")
    st.stop()
st.sidebar.caption(f"Computing on **{runtime.device}** ({runtime.precision})")
PAGES = Path(__file__).resolve().parent / "app_pages"
nav = st.navigation([
    st.Page(PAGES / "story.py", title="Start here", icon=":material/school:", default=True),
    st.Page(PAGES / "patch.py", title="Patch", icon=":material/tune:"),
    st.Page(PAGES / "typographic.py", title="Typographic attack", icon=":material/text_fields:"),
    st.Page(PAGES / "counting.py", title="Counting", icon=":material/123:"),
    st.Page(PAGES / "multitask.py", title="Multi-task & transfer", icon=":material/stacks:"),
    st.Page(PAGES / "wiseft.py", title="WiSE-FT", icon=":material/shield:"),
    st.Page(PAGES / "arithmetic.py", title="Task arithmetic", icon=":material/calculate:"),
    st.Page(PAGES / "closed_vocab.py", title="Closed-vocabulary addition", icon=":material/category:"),
    st.Page(PAGES / "prompts.py", title="Prompts across an update", icon=":material/upgrade:"),
    st.Page(PAGES / "models_runs.py", title="Models & runs", icon=":material/model_training:"),
])
nav.run()
