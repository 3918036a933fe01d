"""Streamlit entry script of the station UI: page setup and navigation. Each page draws the
sign-in sidebar itself (``auth.page_start``), so it is part of every page's own run."""

from pathlib import Path

import streamlit as st

st.set_page_config(page_title="Inspection station", page_icon=":material/search:", layout="wide")

PAGES = Path(__file__).parent / "pages"
navigation = st.navigation([
    st.Page(PAGES / "inspect_page.py", title="Inspect", icon=":material/search:", default=True),
    st.Page(PAGES / "live_line.py", title="Live line", icon=":material/conveyor_belt:"),
    st.Page(PAGES / "products.py", title="Products", icon=":material/inventory_2:"),
    st.Page(PAGES / "history.py", title="History and feedback", icon=":material/history:"),
    st.Page(PAGES / "reports.py", title="Reports", icon=":material/description:"),
    st.Page(PAGES / "settings_page.py", title="Settings", icon=":material/settings:"),
])
navigation.run()
