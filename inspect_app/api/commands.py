"""``inspect-app api``: serve the REST API with uvicorn."""

from __future__ import annotations

from pathlib import Path

import typer

from inspect_app.clikit import ModelsDir, console, user_errors
from inspect_app.edge.loading import RUNTIME_HELP, parse_runtime


def register(app: typer.Typer) -> None:
    @app.command("api")
    @user_errors
    def api(host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: all interfaces)."),
            port: int = typer.Option(8000, "--port", min=1, max=65535),
            models_dir: Path | None = ModelsDir,
            model_dir: Path | None = typer.Option(None, "--model", help="Serve an exported model folder "
                                                  "(inspect-app export) instead of the fitted profiles."),
            runtime: str | None = typer.Option(None, "--runtime", help=RUNTIME_HELP),
            store_url: str | None = typer.Option(None, "--store", help="Results store URL (default "
                                                    "$INSPECT_APP_STORE_URL or sqlite:///data/store/results.db)."),
            docs: bool = typer.Option(False, "--docs", help="Serve the interactive docs at /docs."),
            metrics_from: list[str] = typer.Option([], "--metrics-from",
                                                   help="An address that may scrape /metrics without a token "
                                                        "(repeatable)."),
            rate_limit: float = typer.Option(50.0, "--rate-limit", min=0.1,
                                             help="Requests per second per viewer/admin client."),
            images_max_mb: int = typer.Option(5 * 1024, "--images-max-mb", min=1,
                                              help="Disk quota for stored result images (PASS images go first).")
            ) -> None:
        """Serve the REST API: POST /inspect, GET /results, /health, /metrics. Every endpoint but
        /health needs 'Authorization: Bearer <token>' (inspect-app token add). Serve it behind a
        TLS-terminating reverse proxy when it leaves the machine (README)."""
        import uvicorn

        from inspect_app.api import create_app
        from inspect_app.api.auth import RateLimits
        from inspect_app.store import ResultsStore, RetentionPolicy

        with ResultsStore(store_url, retention=RetentionPolicy(max_bytes=images_max_mb * 1024**2)) as store:
            console.print(f"results store: {store.display_url} (images in {store.images_dir}, quota "
                          f"{images_max_mb} MB)" + (f"; API docs at http://{host}:{port}/docs" if docs else ""))
            if not store.tokens():
                console.print("[yellow]no API tokens yet: every request but /health is refused; add one with "
                              "inspect-app token add NAME --role viewer|station|admin[/]")
            app_ = create_app(models_dir, store, docs=docs, rate_limits=RateLimits(per_s=rate_limit),
                              metrics_addresses=metrics_from, runtime=parse_runtime(runtime), model_dir=model_dir)
            uvicorn.run(app_, host=host, port=port, log_level="info")
