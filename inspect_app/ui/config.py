"""Settings of the station UI, read from environment variables.

``inspect-app ui`` turns its options into these variables before starting Streamlit, so the app
script (a separate process) and the tests (which set them directly) configure it the same way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from inspect_app.errors import InspectAppError
from inspect_app.profile import models_dir as resolve_models_dir

ENV_PREFIX = "INSPECT_APP_UI_"
TRUE_WORDS = {"1", "true", "yes", "on"}


class UIConfig(BaseModel):
    """What one station UI process works with."""

    models_dir: Path
    store_url: str | None = None  # None: the store's own default ($INSPECT_APP_STORE_URL or ./data/store)
    good_images_dir: Path  # per product: good images kept for refits (uploads, added false rejects)
    operator_no_login: bool = False  # operators inspect and give feedback without a password
    max_upload_mb: float = Field(25.0, gt=0)
    max_zip_mb: float = Field(2000.0, gt=0)  # total uncompressed size of a zip of good images
    reports_dir: Path = Path("reports")  # where the Reports page writes, one folder per report
    line_camera: str | None = None  # device index, stream URL, video file or folder for snapshots
    station: str = "ui"  # station name of results inspected in the UI
    explainer_variant: str | None = None  # ExplainerService variant; None: its measured default
    secret: str | None = None  # signs session cookies; None: a random key kept in the profiles folder
    session_idle_min: float = Field(30.0, gt=0)  # signed out after this long without using the station
    session_max_hours: float = Field(12.0, gt=0)  # a sign-in lasts at most this long (one shift and more)
    viewer_token: str | None = None  # opens the read-only wall screen (?kiosk=<token>) from another PC

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> UIConfig:
        env = os.environ if env is None else env
        models = resolve_models_dir(env.get("INSPECT_APP_MODELS_DIR"))
        good = env.get(ENV_PREFIX + "GOOD_IMAGES_DIR")
        fields = {
            "models_dir": models,
            "store_url": env.get("INSPECT_APP_STORE_URL") or None,
            # "_good_images" can never be a product name (those start with a letter or digit).
            "good_images_dir": Path(good) if good else models / "_good_images",
            "operator_no_login": env.get(ENV_PREFIX + "OPERATOR_NO_LOGIN", "0").strip().lower() in TRUE_WORDS,
            "line_camera": env.get(ENV_PREFIX + "LINE_CAMERA") or None,
            "reports_dir": Path(env.get(ENV_PREFIX + "REPORTS_DIR") or "reports"),
        }
        for name in ("max_upload_mb", "max_zip_mb", "station", "explainer_variant", "secret", "session_idle_min",
                     "session_max_hours", "viewer_token"):
            value = env.get(ENV_PREFIX + name.upper())
            if value:
                fields[name] = value
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise InspectAppError(f"station UI setting {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
