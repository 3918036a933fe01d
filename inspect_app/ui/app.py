"""Entry script of the station UI: page setup, the sign-in sidebar, and the pages the user's role
may use (operators never see engineer pages). ``?kiosk=<viewer token>`` (or any ``?kiosk`` from
this PC) shows only the read-only run screen, for a wall display."""

from pathlib import Path

import streamlit as st

from inspect_app.ui import auth, resources
from inspect_app.ui.sessions import kiosk_allowed
from inspect_app.ui.widgets import page_style

st.set_page_config(page_title="Inspection station", page_icon=":material/search:", layout="wide")
page_style()

PAGES = Path(__file__).parent / "pages"
RUN = st.Page(PAGES / "run_screen.py", title="Run screen", icon=":material/monitor:", url_path="run", default=True)
cfg = resources.config()
if "kiosk" in st.query_params:
    if not kiosk_allowed(cfg.viewer_token, st.query_params.get("kiosk"), st.context.ip_address):
        st.error("This wall screen needs the station's viewer token in its address (?kiosk=<token>).")
        st.stop()
    st.session_state["kiosk"] = True
    st.navigation([RUN], position="hidden").run()
    st.stop()

st.session_state["kiosk"] = False
auth.restore_session(cfg)
auth.login_sidebar(cfg)
pages = [RUN,
         st.Page(PAGES / "inspect_page.py", title="Inspect", icon=":material/search:", url_path="inspect"),
         st.Page(PAGES / "history.py", title="History and feedback", icon=":material/history:", url_path="history"),
         st.Page(PAGES / "reports.py", title="Reports", icon=":material/description:", url_path="reports")]
if auth.is_engineer(cfg):
    pages += [st.Page(PAGES / "products.py", title="Products", icon=":material/inventory_2:", url_path="products"),
              st.Page(PAGES / "settings_page.py", title="Settings", icon=":material/settings:", url_path="settings")]
st.navigation(pages).run()
