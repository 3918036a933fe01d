"""REST API (FastAPI): inspect an uploaded image, read stored results, health, Prometheus
metrics, and an external trigger for a running station."""

from inspect_app.api.app import create_app

__all__ = ["create_app"]
