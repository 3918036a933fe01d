"""Who is using the station: a sidebar login against the store's users (argon2 hashes), and the
role checks pages make before changes. Engineers fit, delete, change thresholds and settings;
operators inspect and give feedback, without a password when the station is configured so."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from inspect_app.ui import resources
from inspect_app.ui.config import UIConfig

SESSION_KEY = "ui_user"
ANONYMOUS_OPERATOR = "operator (no login)"


@dataclass(frozen=True)
class CurrentUser:
    name: str
    role: str  # "engineer" or "operator"
    logged_in: bool


def current_user(cfg: UIConfig) -> CurrentUser | None:
    """The logged-in user, else the anonymous operator when no login is required, else None."""
    user = st.session_state.get(SESSION_KEY)
    if user is not None:
        return user
    if cfg.operator_no_login:
        return CurrentUser(ANONYMOUS_OPERATOR, "operator", False)
    return None


def audit(cfg: UIConfig, action: str, detail: dict | str = "") -> None:
    """Record a change in the audit log under the current user's name."""
    user = current_user(cfg)
    resources.store(cfg).audit(user.name if user else "", action, detail)


def login_sidebar(cfg: UIConfig) -> None:
    """The sign-in box (or the signed-in user and a sign-out button) in the sidebar."""
    with st.sidebar:
        user = st.session_state.get(SESSION_KEY)
        if user is not None:
            st.markdown(f"Signed in as **{user.name}** ({user.role})")
            if st.button("Sign out", key="auth_sign_out"):
                audit(cfg, "logout")
                del st.session_state[SESSION_KEY]
                st.rerun()
            return
        if cfg.operator_no_login:
            st.caption("Operators may inspect and give feedback without signing in. "
                       "Engineers sign in to fit, delete, change thresholds and settings.")
        with st.form("auth_login", clear_on_submit=True):
            name = st.text_input("User", key="auth_name")
            password = st.text_input("Password", type="password", key="auth_password")
            submitted = st.form_submit_button("Sign in")
        if submitted:
            try:
                store = resources.store(cfg)
                found = store.verify_user(name.strip(), password or None)
            except Exception as exc:  # the store is down: say so, keep the page
                st.error(f"Sign-in is unavailable: the results store cannot be reached ({exc})")
                return
            if found is None:
                store.audit(name.strip(), "login.failed")
                st.error("Unknown user or wrong password.")
                return
            st.session_state[SESSION_KEY] = CurrentUser(found.name, found.role, True)
            store.audit(found.name, "login", {"role": found.role})
            st.rerun()


def page_start(title: str) -> UIConfig:
    """The top of every page: the config, the sign-in sidebar and the title."""
    cfg = resources.config()
    login_sidebar(cfg)
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
    if user is None or user.role != "engineer":
        st.warning(f"An engineer sign-in (sidebar) is needed to {action}.")
        return None
    return user
