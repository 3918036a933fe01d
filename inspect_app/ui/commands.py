"""``inspect-app ui``: serve the station UI with Streamlit (headless, no usage statistics)."""

from __future__ import annotations

import math
import os
import shutil
import sys
from enum import StrEnum
from pathlib import Path

import typer

APP_SCRIPT = Path(__file__).with_name("app.py")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
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


class CpuPriority(StrEnum):
    """The CPU priority of the UI server or the wall-screen browser. ``idle`` (Linux
    ``SCHED_IDLE``): it runs only on CPU time nothing else wants, so a line station on the same PC
    keeps its pace and latency. With both at idle priority the run screen raised the station's
    latency by 2-5 %, at normal priority by 14-23 % (benchmarks/ui_refresh.py, NOTEBOOK
    2026-12-06). A fit started from the UI then also takes only what the line leaves."""

    IDLE = "idle"
    NORMAL = "normal"


def lower_cpu_priority(priority: CpuPriority) -> None:
    """Apply ``priority`` to this process and the programs it executes (kept across ``exec``)."""
    if priority == CpuPriority.IDLE:
        if hasattr(os, "sched_setscheduler"):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        else:  # no SCHED_IDLE outside Linux: the lowest nice level
            os.nice(19)


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
           cpu_priority: CpuPriority = typer.Option(
               CpuPriority.IDLE, "--cpu-priority",
               help="idle: use only CPU time a line station on this PC leaves (its latency is kept); "
                    "normal: compete with it."),
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
        lower_cpu_priority(cpu_priority)
        os.execve(sys.executable, streamlit_command(port, host, cfg.max_upload_mb), env)

    @app.command("wall-screen")
    @user_errors
    def wall_screen(url: str = typer.Option("http://127.0.0.1:8501/?kiosk", "--url",
                                            help="The run screen's kiosk address (another PC: ?kiosk=<viewer token>)."),
                    browser: str | None = typer.Option(None, "--browser", help="Browser program (default: the "
                                                          "first of " + ", ".join(BROWSERS) + " found)."),
                    cpu_priority: CpuPriority = typer.Option(
                        CpuPriority.IDLE, "--cpu-priority",
                        help="idle: draw only on CPU time a line station on this PC leaves."),
                    ) -> None:
        """Show the run screen full screen in Chromium, at idle CPU priority beside a line station."""
        from inspect_app.errors import InspectAppError

        found = shutil.which(browser) if browser else next(filter(None, map(shutil.which, BROWSERS)), None)
        if found is None:
            raise InspectAppError(f"browser {browser!r} not found" if browser else
                                  "no Chromium or Chrome found: install chromium, or pass --browser PROGRAM")
        out.print(f"wall screen: {url} in {found} ({cpu_priority} CPU priority)")
        sys.stdout.flush()
        lower_cpu_priority(cpu_priority)
        os.execv(found, [found, "--kiosk", "--no-first-run", "--noerrdialogs", "--disable-session-crashed-bubble",
                         "--disable-infobars", url])
