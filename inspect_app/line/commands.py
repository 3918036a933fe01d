"""``inspect-app line``: run a station from a YAML file or from flags, until stopped.

SIGTERM and Ctrl-C stop it within the station's ``shutdown_timeout_s`` (3 s): capture stops,
queued frames are inspected and stored, running explanations are cut (their results keep the
template sentence), and the final accounting is printed as one JSON line. A second station with
the same name is refused at start; restarting the same command after a crash resumes. With
``--api-port`` the REST API serves the station too; ``cli`` passes its factory in
(``inspect_app.api.create_app``), since one feature never imports another.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import typer

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp

    from inspect_app.edge.sessions import Runtime
    from inspect_app.line.config import StationConfig
    from inspect_app.line.station import Station
    from inspect_app.store import ResultsStore


STOP_IMAGES_S = 0.5  # at exit, result images still being written get this long


class ApiFactory(Protocol):
    """Builds the REST API app that serves a running station and its store."""

    def __call__(self, models_dir: Path | None, store: ResultsStore, station: Station, *,
                 runtime: Runtime | None = ..., model_dir: Path | None = ...) -> ASGIApp: ...


def register(app: typer.Typer, create_api: ApiFactory) -> None:
    from inspect_app.clikit import ModelsDir, exit_at_once_when_done, user_errors
    from inspect_app.edge.loading import RUNTIME_HELP

    @app.command("line")
    @user_errors
    def line(config: Path | None = typer.Option(None, "--config",
                                                help="Station YAML file (see data/station.example.yaml)."),
             source: str | None = typer.Option(None, "--source", help="Device index, rtsp:// or http(s):// URL, "
                                                  "video file, watched folder, or 'push'."),
             product: str | None = typer.Option(None, "--product", help="Fitted product to inspect."),
             store: str | None = typer.Option(None, "--store", help="Results store URL (default "
                                                 "$INSPECT_APP_STORE_URL or SQLite under ./data/store)."),
             mqtt: str | None = typer.Option(None, "--mqtt", help="MQTT broker HOST:PORT."),
             max_frames: int | None = typer.Option(None, "--max-frames", min=1,
                                                      help="Stop after N frames were inspected and stored."),
             models_dir: Path | None = ModelsDir,
             model_dir: Path | None = typer.Option(None, "--model", help="An exported model folder (inspect-app "
                                                   "export) instead of --product: runs without torch."),
             runtime: str | None = typer.Option(None, "--runtime", help=RUNTIME_HELP),
             station: str | None = typer.Option(None, "--station", help="Station name (MQTT topics, store)."),
             trigger: str | None = typer.Option(None, "--trigger", help="continuous, external or part-present."),
             fps: float | None = typer.Option(None, "--fps", min=0.01,
                                                 help="Continuous trigger: at most F inspections per second."),
             api_port: int | None = typer.Option(None, "--api-port", help="Also serve the REST API on this port."),
             drain: bool = typer.Option(False, "--drain", help="Watched folder: exit 0 once every file present "
                                        "(or arriving meanwhile) has its result; after a crash the same command "
                                        "finishes the rest."),
             ) -> None:
        """Run an inspection station on a camera, stream, video, folder or pushed images."""
        from inspect_app.errors import InspectAppError
        from inspect_app.line.memory import cap_malloc_arenas

        cap_malloc_arenas()  # before the model and the station's threads start (see line.memory)
        from inspect_app.edge.loading import parse_runtime
        from inspect_app.edge.manifest import EdgeManifest
        from inspect_app.line.config import load_station_config, parse_station_config
        from inspect_app.product_settings import MqttConfig

        data = load_station_config(config).model_dump(exclude_unset=True) if config else {}
        if model_dir is not None and product is None:
            product = EdgeManifest.read(model_dir, verify=False).product
        if config is None and (source is None or product is None):
            raise InspectAppError("give --config station.yaml, or at least --source SRC and --product NAME "
                                  "(or --model DIR)")
        overrides = {"product": product, "models_dir": models_dir, "max_frames": max_frames, "name": station,
                     "api_port": api_port, "model_dir": model_dir, "runtime": parse_runtime(runtime)}
        data.update({k: v for k, v in overrides.items() if v is not None})
        if source is not None:
            data["source"] = {**(data.get("source") or {}), "uri": source, "kind": "auto"}
        if drain:
            data["source"] = {**(data.get("source") or {}), "drain": True}
        if store is not None:
            data.setdefault("store", {})["url"] = store
        if mqtt is not None:
            address = MqttConfig.from_address(mqtt).model_dump(include={"host", "port"})
            data["mqtt"] = {**(data.get("mqtt") or {}), **address}
        if trigger is not None:
            data.setdefault("trigger", {})["mode"] = trigger
        if fps is not None:
            data.setdefault("trigger", {})["fps"] = fps
        run_station(parse_station_config(data, str(config) if config else "command line"), create_api)
        exit_at_once_when_done()  # everything is stored and flushed: skip interpreter finalization


def run_station(cfg: StationConfig, create_api: ApiFactory) -> dict[str, Any]:
    """Start the station (and the API when asked), log progress, stop on a signal or when done."""
    import logging
    import signal
    import threading
    import time
    from types import FrameType

    from inspect_app.clikit import console, out
    from inspect_app.line.station import Station
    from inspect_app.store import ResultsStore

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    stop = threading.Event()
    signalled: list[int] = []

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        # Only note it: the handler runs inside whatever the main thread was doing (a progress
        # print, an import), and printing from here re-entered rich's lazy import and crashed.
        signalled.append(signum)
        stop.set()

    # The command opens the store (not the station) so that the API shares it until both stopped.
    store = ResultsStore(cfg.store.url, images_dir=cfg.store.images_dir)
    try:
        station = Station(cfg, store=store)
        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        server = None
        try:
            station.start()
            if cfg.api_port:
                server = _serve_api(create_api(cfg.models_dir, store, station, runtime=cfg.runtime,
                                               model_dir=cfg.model_dir), cfg.api_host, cfg.api_port)
            last = 0.0
            while not stop.wait(0.5) and not station.finished.is_set():
                if time.monotonic() - last >= 5:
                    last = time.monotonic()
                    _print_progress(station.status(), cfg.max_frames)
        finally:
            if signalled:
                console.print(f"[yellow]{signal.Signals(signalled[0]).name}: stopping; {len(station.queue)} queued "
                              "frame(s) are inspected and stored first, explanations are cut[/]")
            final = station.stop()
            if server is not None:
                server.should_exit = True
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        store.close(images_timeout=STOP_IMAGES_S)  # result rows are all stored; late PNGs are not waited for
    out.print(json.dumps({"final": final}, default=str), soft_wrap=True, highlight=False, markup=False)
    return final


def _print_progress(s: dict[str, Any], max_frames: int | None) -> None:
    from inspect_app.clikit import console

    console.print(f"{s['station']}: camera {s['camera']['state']}, {s['results']} results "
                  f"(PASS {s['counts']['PASS']} FAIL {s['counts']['FAIL']} ERROR {s['counts']['ERROR']}), "
                  f"{s['fps']:.1f} fps, queue {s['queues']['inspect']}, dropped {s['dropped_frames']}, "
                  f"corrupt {s['corrupt_frames']}, rejected {s['rejected_parts']}"
                  + (f" / max {max_frames}" if max_frames else ""))


def _serve_api(app: ASGIApp, host: str, port: int) -> uvicorn.Server:
    """The REST API in a background thread."""
    import threading

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    threading.Thread(target=server.run, name="api", daemon=True).start()
    return server
