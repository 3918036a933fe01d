"""Who is using the station: a sidebar sign-in against the store's users (argon2 hashes), kept
across reloads by a signed session cookie and ended after idle time, and the role checks pages
make. Engineers fit, delete, change thresholds, settings and approve learning; operators inspect
and give feedback, without a password when the station is configured so. Pages only draw the
controls the user's role may use (``require_engineer`` stays as the guard behind them)."""

from __future__ import annotations

import time

import streamlit as st

from inspect_app.ui import resources
from inspect_app.ui.config import UIConfig
from inspect_app.ui.sessions import COOKIE_NAME, CurrentUser, SessionCookies, cookie_script, station_secret

SESSION_KEY = "ui_user"
ACTIVE_KEY = "ui_last_active"
COOKIE_SIGNED_KEY = "ui_cookie_signed"
FULL_RERUN_KEY = "ui_full_rerun"
RESIGN_EVERY_S = 30.0  # the cookie is re-signed (its idle clock reset) at most this often
ANONYMOUS_OPERATOR = "operator (no login)"

def _cookies(cfg: UIConfig) -> SessionCookies:
    return SessionCookies(station_secret(cfg.models_dir, cfg.secret), cfg.session_idle_min * 60,
                          cfg.session_max_hours * 3600)


def _set_cookie(value: str, max_age_s: float) -> None:
    with st.sidebar:
        st.html(cookie_script(COOKIE_NAME, value, int(max_age_s)), unsafe_allow_javascript=True)


def sign_out(cfg: UIConfig, note: str | None = None) -> None:
    st.session_state.pop(SESSION_KEY, None)
    st.session_state.pop(COOKIE_SIGNED_KEY, None)
    _set_cookie("", 0)
    if note:
        st.session_state["auth_note"] = note


def restore_session(cfg: UIConfig) -> None:
    """Sign in from the session cookie after a reload; sign out after ``session_idle_min`` of no
    use. Called once per script run, before the pages are chosen."""
    now = time.time()
    st.session_state.pop(FULL_RERUN_KEY, None)  # this is the full run
    user = st.session_state.get(SESSION_KEY)
    cookies = _cookies(cfg)
    if user is None:
        user = cookies.read(st.context.cookies.get(COOKIE_NAME), now)
        if user is not None:
            st.session_state[SESSION_KEY] = user
            st.session_state[COOKIE_SIGNED_KEY] = 0.0
    elif now - st.session_state.get(ACTIVE_KEY, now) > cookies.idle_s:
        audit(cfg, "logout.idle")
        sign_out(cfg, f"Signed out after {cfg.session_idle_min:g} min without activity.")
        user = None
    st.session_state[ACTIVE_KEY] = now
    if user is not None and now - st.session_state.get(COOKIE_SIGNED_KEY, 0.0) > RESIGN_EVERY_S:
        _set_cookie(cookies.issue(user), cookies.idle_s)
        st.session_state[COOKIE_SIGNED_KEY] = now


def current_user(cfg: UIConfig) -> CurrentUser | None:
    """The signed-in user, else the anonymous operator when no sign-in is required, else None."""
    user = st.session_state.get(SESSION_KEY)
    if user is not None:
        return user
    if cfg.operator_no_login:
        return CurrentUser(ANONYMOUS_OPERATOR, "operator", False)
    return None


def is_engineer(cfg: UIConfig) -> bool:
    user = current_user(cfg)
    return user is not None and user.is_engineer


def audit(cfg: UIConfig, action: str, detail: dict | str = "") -> None:
    """Record a change in the audit log under the current user's name."""
    user = current_user(cfg)
    resources.store(cfg).audit(user.name if user else "", action, detail)


def login_sidebar(cfg: UIConfig) -> None:
    """The sign-in box (or the signed-in user and a sign-out button) in the sidebar."""
    with st.sidebar:
        if note := st.session_state.pop("auth_note", None):
            st.info(note)
        user = st.session_state.get(SESSION_KEY)
        if user is not None:
            st.markdown(f"Signed in as **{user.name}** ({user.role})")
            if st.button("Sign out", key="auth_sign_out"):
                audit(cfg, "logout")
                sign_out(cfg)
                st.rerun()
            return
        if cfg.operator_no_login:
            st.caption("Operators may inspect and give feedback without signing in. "
                       "Engineers sign in to fit, delete, change thresholds and settings.")
        with st.form("auth_login", clear_on_submit=True):
            st.text_input("User", key="auth_name")
            st.text_input("Password", type="password", key="auth_password")
            st.form_submit_button("Sign in", on_click=_sign_in, args=(cfg,))
        if error := st.session_state.pop("auth_error", None):
            st.error(error)


def _sign_in(cfg: UIConfig) -> None:
    """The sign-in button's callback: it runs even when the click lands in a run of the run screen's
    refreshing fragment, where the form's own return value would be lost."""
    name = str(st.session_state.get("auth_name") or "").strip()
    password = st.session_state.get("auth_password") or None
    try:
        store = resources.store(cfg)
        found = store.verify_user(name, password)
    except Exception as exc:  # the store is down: say so, keep the page
        st.session_state["auth_error"] = f"Sign-in is unavailable: the results store cannot be reached ({exc})"
        return
    if found is None:
        store.audit(name, "login.failed")
        st.session_state["auth_error"] = "Unknown user or wrong password."
        return
    st.session_state[SESSION_KEY] = CurrentUser(found.name, found.role, True, time.time())
    st.session_state[COOKIE_SIGNED_KEY] = 0.0  # the next full run writes the cookie
    st.session_state[FULL_RERUN_KEY] = True
    store.audit(found.name, "login", {"role": found.role})


def full_rerun_if_signed_in() -> None:
    """Called at the top of refreshing fragments: after a sign-in, redraw the whole app (its pages)."""
    if st.session_state.pop(FULL_RERUN_KEY, False):
        st.rerun(scope="app")


def page_start(title: str | None) -> UIConfig:
    """The top of every page: the config and the title (the sidebar is drawn by ``app.py``)."""
    cfg = resources.config()
    if title:
        st.title(title)
    return cfg


def require_user(cfg: UIConfig) -> CurrentUser | None:
    """The current user for operator actions; shows why not and returns None without one."""
    user = current_user(cfg)
    if user is None:
        st.info("Sign in (sidebar) to inspect and give feedback.")
    return user


def require_engineer(cfg: UIConfig, action: str) -> CurrentUser | None:
    """The current user when they are an engineer; otherwise a visible note and None."""
    user = current_user(cfg)
    if user is None or not user.is_engineer:
        st.warning(f"An engineer sign-in (sidebar) is needed to {action}.")
        return None
    return user
