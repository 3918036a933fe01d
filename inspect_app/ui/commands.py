"""``inspect-app ui``: serve the station UI with Streamlit (headless, no usage statistics)."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import typer

APP_SCRIPT = Path(__file__).with_name("app.py")
STREAMLIT_DEFAULT_UPLOAD_MB = 200  # Streamlit's own cap; the UI's per-image limit is checked in the app


def streamlit_command(port: int, host: str, max_upload_mb: float) -> list[str]:
    """The ``streamlit run`` command line for the app script."""
    return [sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT),
            "--server.port", str(port), "--server.address", host,
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--server.runOnSave", "false",
            "--server.maxUploadSize", str(max(STREAMLIT_DEFAULT_UPLOAD_MB, math.ceil(2 * max_upload_mb))),
            "--client.toolbarMode", "minimal",
            # Streamlit collects all garbage generations after every run; with the run screen
            # rerunning each second in a process holding torch and the models, that was half of
            # the UI server's CPU (py-spy, benchmarks/ui_refresh.py), taken from a line station on
            # the same cores. Python's own generational collection still runs.
            "--runner.postScriptGC", "false"]


def register(app: typer.Typer) -> None:
    from inspect_app.clikit import ModelsDir, out, user_errors

    @app.command("ui")
    @user_errors
    def ui(port: int = typer.Option(8501, "--port", min=1, max=65535, help="Port to serve on."),
           host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: the whole network)."),
           models_dir: Path | None = ModelsDir,
           store: str | None = typer.Option(None, "--store", help="Results store URL (default "
                                               "$INSPECT_APP_STORE_URL, else SQLite under ./data/store)."),
           operator_no_login: bool | None = typer.Option(
               None, "--operator-no-login/--operator-login",
               help="Let operators inspect and give feedback without signing in (default: "
                    "$INSPECT_APP_UI_OPERATOR_NO_LOGIN, else sign-in required)."),
           max_upload_mb: float | None = typer.Option(None, "--max-upload-mb", min=0.1,
                                                         help="Largest image accepted (default 25 MB)."),
           line_camera: str | None = typer.Option(None, "--line-camera", help="Camera for on-demand "
                                                     "snapshots: device index, stream URL, video file or folder."),
           ) -> None:
        """Serve the station UI (run screen, inspect, history, reports, products, settings)."""
        from inspect_app.store import ResultsStore
        from inspect_app.ui.config import ENV_PREFIX, UIConfig

        env = dict(os.environ)
        if models_dir is not None:
            env["INSPECT_APP_MODELS_DIR"] = str(models_dir.resolve())
        if store is not None:
            env["INSPECT_APP_STORE_URL"] = store
        if operator_no_login is not None:
            env[ENV_PREFIX + "OPERATOR_NO_LOGIN"] = "1" if operator_no_login else "0"
        if max_upload_mb is not None:
            env[ENV_PREFIX + "MAX_UPLOAD_MB"] = str(max_upload_mb)
        if line_camera is not None:
            env[ENV_PREFIX + "LINE_CAMERA"] = line_camera
        cfg = UIConfig.from_env(env)
        ResultsStore(cfg.store_url).close()  # creates or upgrades the schema now; a bad URL stops here
        login = "operators without sign-in" if cfg.operator_no_login else "sign-in required for everyone"
        out.print(f"station UI on http://{host}:{port} · profiles {cfg.models_dir} · {login}")
        sys.stdout.flush()
        os.execve(sys.executable, streamlit_command(port, host, cfg.max_upload_mb), env)
