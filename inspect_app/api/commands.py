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
                                                    "$INSPECT_APP_STORE_URL or sqlite:///data/store/results.db).")
            ) -> None:
        """Serve the REST API: POST /inspect, GET /results, /health, /metrics; docs at /docs."""
        import uvicorn

        from inspect_app.api import create_app
        from inspect_app.store import ResultsStore

        with ResultsStore(store_url) as store:
            console.print(f"results store: {store.display_url} (images in {store.images_dir}); "
                          f"API docs at http://{host}:{port}/docs")
            app_ = create_app(models_dir, store, runtime=parse_runtime(runtime), model_dir=model_dir)
            uvicorn.run(app_, host=host, port=port, log_level="info")
