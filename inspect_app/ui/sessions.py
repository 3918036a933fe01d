"""Sign-ins that survive a browser reload: a signed, expiring session cookie (itsdangerous), and
the wall-screen (kiosk) access rule. Free of Streamlit so the rules are tested directly.

The cookie holds the user's name, role and sign-in time, signed with the station's secret; it is
re-signed as the user works, so its signing time is the last activity: older than the idle
timeout, or a sign-in older than the session's maximum age, and it no longer signs anyone in.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from inspect_app.store import Role

COOKIE_NAME = "inspect_session"
SECRET_FILE = "_ui_secret"  # in the profiles folder ("_" names are never products)
_PROCESS_KEY = secrets.token_hex(32)
LOOPBACK = {None, "127.0.0.1", "::1", "localhost"}  # Streamlit reports no address for localhost


@dataclass(frozen=True)
class CurrentUser:
    name: str
    role: Role
    logged_in: bool
    signed_in_at: float = 0.0  # time.time() of the sign-in (0 for the anonymous operator)

    @property
    def is_engineer(self) -> bool:
        return self.role == "engineer"


def station_secret(models_dir: Path, env_secret: str | None = None) -> str:
    """The key that signs session cookies: ``$INSPECT_APP_UI_SECRET``, else a random key kept in
    the profiles folder (readable by the station's user only), made on first use; where that
    folder cannot be written, a key for this process only (sign-ins then end with a restart)."""
    if env_secret:
        return env_secret
    path = models_dir / SECRET_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_hex(32)
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another session made it meanwhile
        return path.read_text().strip()
    except OSError:
        return _PROCESS_KEY
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


class SessionCookies:
    """Issues and reads session tokens (the cookie's value)."""

    def __init__(self, secret: str, idle_s: float, max_age_s: float):
        self._serializer = URLSafeTimedSerializer(secret, salt="inspect-app-ui-session")
        self.idle_s, self.max_age_s = idle_s, max_age_s

    def issue(self, user: CurrentUser) -> str:
        return self._serializer.dumps({"name": user.name, "role": user.role, "since": user.signed_in_at})

    def read(self, token: str | None, now: float | None = None) -> CurrentUser | None:
        """The signed-in user, or None for a missing, forged, idle-expired or too old token."""
        if not token:
            return None
        now = time.time() if now is None else now
        try:
            data, signed = self._serializer.loads(token, max_age=None, return_timestamp=True)
        except (BadSignature, SignatureExpired):
            return None
        if now - signed.timestamp() > self.idle_s or now - float(data.get("since", 0)) > self.max_age_s:
            return None
        if data.get("role") not in ("engineer", "operator") or not data.get("name"):
            return None
        return CurrentUser(str(data["name"]), data["role"], True, float(data["since"]))


def kiosk_allowed(viewer_token: str | None, given_token: str | None, client_ip: str | None) -> bool:
    """The read-only wall screen opens with the station's viewer token in the URL, or from this PC."""
    if viewer_token and given_token and hmac.compare_digest(viewer_token, given_token):
        return True
    return client_ip in LOOPBACK


def cookie_script(name: str, value: str, max_age_s: int) -> str:
    """JavaScript that sets (or, with ``max_age_s`` 0, removes) a cookie for the whole site."""
    return (f'<script>document.cookie = "{name}={value}; Max-Age={int(max_age_s)}; Path=/; '
            f'SameSite=Strict";</script>')
