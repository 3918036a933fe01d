"""``create_app``: the REST API of a station PC. Every endpoint but ``/health`` needs a bearer
token with the right role (``api.auth``); ``/docs`` is served only when asked for.

- ``POST /inspect?product=NAME`` (multipart field ``file``): decode, inspect with the product's
  one ``Inspector``, store the result, return its JSON. Bad uploads get a 4xx with the reason.
- ``GET /results`` (filters, paging), ``GET /results/{id}``.
- ``GET /health``: version, fitted products, store reachable, station status when attached;
  ``degraded`` (503) while the store is unreachable or the station spools results.
- ``GET /metrics``: Prometheus text: the API's counters and latencies, plus the attached
  station's registry (``station.metrics_registry``) or the one passed as ``metrics_registry``.
- ``POST /trigger``: an external trigger (PLC, light barrier) for the attached station;
  ``POST /frames``: push one image (one part) to a station whose source is ``push``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from concurrent.futures import Future
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from inspect_app import __version__
from inspect_app.api.auth import READERS, WRITERS, Guard, RateLimits
from inspect_app.api.metrics import ApiMetrics
from inspect_app.api.station import ServedStation
from inspect_app.edge.sessions import Runtime
from inspect_app.errors import ImageLoadError, InspectAppError, ProfileError
from inspect_app.inspector_cache import InspectorCache
from inspect_app.profile import check_product_name
from inspect_app.results import InspectionResult, Verdict

if TYPE_CHECKING:
    import numpy as np
    from prometheus_client import CollectorRegistry

    from inspect_app.explain import ExplainerService, Explanation
    from inspect_app.store import ApiClient, ResultsStore

log = logging.getLogger(__name__)
# Far above a raw 20-megapixel camera frame as PNG; far below what a station PC should buffer.
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
VERDICT_WORDS = frozenset(v.value for v in Verdict)


def _client_error(status: int, detail: str, metrics: ApiMetrics | None = None, reason: str = "") -> HTTPException:
    if metrics is not None and reason:
        metrics.rejected_uploads.labels(reason).inc()
    return HTTPException(status, detail)


def create_app(models_dir: str | Path | None = None, store: ResultsStore | None = None,
               station: ServedStation | None = None, *,
               metrics_registry: CollectorRegistry | None = None, explainer: ExplainerService | None = None,
               max_upload_bytes: int = MAX_UPLOAD_BYTES, docs: bool = False, rate_limits: RateLimits | None = None,
               metrics_addresses: Collection[str] = (), runtime: Runtime | None = None,
               model_dir: Path | None = None) -> FastAPI:
    """The API app. Without ``store`` it opens the default one (``$INSPECT_APP_STORE_URL`` or
    ./data/store/results.db) and closes it on shutdown. FAIL results get the instant template
    explanation in the response (when the product's settings allow explanations); with an
    ``explainer`` its text replaces that one in the store once ready, never delaying the verdict.
    ``docs`` serves ``/docs`` and ``/openapi.json``; ``metrics_addresses`` may scrape ``/metrics``
    without a token; ``rate_limits`` per client (``api.auth``). ``model_dir``: serve the exported
    model there (its manifest's product) instead of the profiles; ``runtime``: what predicts
    (default the fastest installed that agrees with torch)."""
    from inspect_app.store import ResultsStore

    owns_store = store is None
    store = store if store is not None else ResultsStore()
    inspectors = InspectorCache(models_dir, runtime=runtime, model_dir=model_dir)
    metrics = ApiMetrics()
    metrics.watch_images(store.image_usage)
    guard = Guard(store, metrics, rate_limits or RateLimits(), metrics_addresses)
    reader, writer = Depends(guard.allow(READERS)), Depends(guard.allow(WRITERS))
    scraper = Depends(guard.allow(READERS, address_allowed=True))
    if metrics_registry is None and station is not None:
        metrics_registry = station.metrics_registry

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if owns_store:
            store.close()

    app = FastAPI(title="inspect_app", version=__version__, lifespan=lifespan,
                  description="Visual inspection of parts: inspect images, read stored results, station metrics.",
                  docs_url="/docs" if docs else None, redoc_url=None, openapi_url="/openapi.json" if docs else None)

    @app.middleware("http")
    async def measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        length = request.headers.get("content-length")
        response: Response
        if request.method == "POST" and length and length.isdigit() and int(length) > max_upload_bytes + 64 * 1024:
            metrics.rejected_uploads.labels("too_large").inc()
            response = JSONResponse({"detail": f"upload of {int(length):,} bytes exceeds the limit of "
                                               f"{max_upload_bytes:,} bytes"}, status_code=413)
        else:
            response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        metrics.requests.labels(route, request.method, str(response.status_code)).inc()
        metrics.request_latency.labels(route).observe(time.perf_counter() - start)
        return response

    @app.exception_handler(InspectAppError)
    async def user_error(_request: Request, exc: InspectAppError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)

    def read_upload(upload: UploadFile, default_name: str) -> tuple[str, bytes]:
        data = upload.file.read(max_upload_bytes + 1)
        name = upload.filename or default_name
        if not data:
            raise _client_error(400, f"{name}: the uploaded file is empty", metrics, "empty")
        if len(data) > max_upload_bytes:
            raise _client_error(413, f"{name}: upload exceeds the limit of {max_upload_bytes:,} bytes", metrics,
                                "too_large")
        return name, data

    def decode(name: str, data: bytes) -> np.ndarray:
        from inspect_app.data.images import load_image

        try:
            return load_image(data, name=name)
        except ImageLoadError as exc:
            raise _client_error(400, str(exc), metrics, "not_an_image") from None

    def add_template_explanation(result: InspectionResult) -> bool:
        """The instant sentence for a FAIL (if the product's settings allow explanations)."""
        settings = store.get_settings(result.product) if result.product else {}
        if result.verdict != Verdict.FAIL or not settings.get("explanations", True):
            return False
        from inspect_app.explain import template_explanation

        result.explanation = template_explanation(result, language=settings.get("language", "en"))
        result.explanation_source = "template"
        return True

    def refine_explanation(explainer: ExplainerService, result: InspectionResult, rid: int) -> None:
        """The explainer's text replaces the template sentence in the store once it is ready."""

        def stored(future: Future[Explanation]) -> None:
            try:
                expl = future.result()
                store.set_explanation(rid, expl.text, expl.source)
            except Exception:  # the template sentence stays; the verdict was never waiting
                log.exception("explanation of result %s could not be stored", rid)

        explainer.submit(result).add_done_callback(stored)

    @app.post("/inspect", summary="Inspect one uploaded image and store the result", response_model=None)
    def inspect(file: Annotated[UploadFile, File(description="The image (PNG, JPEG, BMP, TIFF, WebP, PNM).")],
                product: Annotated[str, Query(description="Fitted product to inspect against.")],
                lot: Annotated[str | None, Query(max_length=128)] = None,
                station_name: Annotated[str | None, Query(alias="station", max_length=128)] = None,
                client: ApiClient = writer) -> dict[str, Any] | JSONResponse:
        if client.role == "station":  # a station's token stores under its own name only
            if station_name not in (None, client.name):
                raise HTTPException(403, f"token {client.name!r} stores results as station {client.name!r} only")
            station_name = client.name
        station_name = station_name or "api"
        try:
            check_product_name(product)
        except ProfileError as exc:
            raise HTTPException(400, str(exc)) from None
        try:
            inspector, lock = inspectors.get(product)
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from None
        except ProfileError as exc:
            raise HTTPException(409, f"product {product!r} cannot be used: {exc}") from None
        name, data = read_upload(file, "upload")
        image = decode(name, data)
        start = time.perf_counter()
        with lock:
            result = inspector.predict(image)
        result.file = name
        metrics.inspection_latency.labels(product).observe(time.perf_counter() - start)
        metrics.inspections.labels(product, result.verdict).inc()
        try:
            explained = add_template_explanation(result)
            rid = store.add_result(result, station=station_name, lot=lot, image=image)
        except Exception as exc:
            log.exception("result of %s could not be stored", name)
            return JSONResponse({"detail": f"inspected but not stored: {exc}", "stored": False,
                                 **result.to_dict()}, status_code=503)
        if explained and explainer is not None:
            refine_explanation(explainer, result, rid)
        return {"id": rid, "stored": True, "station": station_name, "lot": lot, **result.to_dict()}

    @app.get("/results", summary="Stored results, newest first, with filters and paging")
    def results(product: str | None = None,
                verdict: Annotated[list[str] | None, Query(description="PASS, FAIL or ERROR; repeatable")] = None,
                since: Annotated[datetime | None, Query(description="ISO 8601, inclusive; no zone = UTC")] = None,
                until: Annotated[datetime | None, Query(description="ISO 8601, exclusive; no zone = UTC")] = None,
                lot: str | None = None, station: str | None = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                offset: Annotated[int, Query(ge=0)] = 0, _client: ApiClient = reader) -> dict[str, Any]:
        bad = [v for v in verdict or [] if v.upper() not in VERDICT_WORDS]
        if bad:
            raise HTTPException(400, f"unknown verdict {bad[0]!r}: use PASS, FAIL or ERROR")
        verdicts = verdict or None
        rows = store.query(product=product, verdict=verdicts, since=since, until=until, lot=lot, station=station,
                           limit=limit, offset=offset)
        total = store.count(product=product, verdict=verdicts, since=since, until=until, lot=lot, station=station)
        return {"total": total, "limit": limit, "offset": offset, "results": [row.to_dict() for row in rows]}

    @app.get("/results/{rid}", summary="One stored result with its feedback")
    def result(rid: int, _client: ApiClient = reader) -> dict[str, Any]:
        row = store.get(rid)
        if row is None:
            raise HTTPException(404, f"no stored result with id {rid}")
        return row.to_dict()

    @app.get("/health", summary="Liveness and readiness")
    def health() -> JSONResponse:
        store_ok = store.ping()
        body: dict[str, Any] = {"version": __version__, "products": inspectors.products(),
                                "store": {"ok": store_ok, "dialect": store.dialect}, "models_dir": str(inspectors.root)}
        spooling = False
        if station is not None:
            try:
                body["station"] = station.status()
                spooling = body["station"].get("store", {}).get("state") == "spooling"
            except Exception as exc:
                body["station"] = {"error": f"{type(exc).__name__}: {exc}"}
        healthy = store_ok and not spooling
        body["status"] = "ok" if healthy else "degraded"
        return JSONResponse(body, status_code=200 if healthy else 503)

    @app.get("/metrics", summary="Prometheus text exposition")
    def prometheus_metrics(_client: ApiClient | None = scraper) -> Response:
        text = generate_latest(metrics.registry)
        if metrics_registry is not None:
            text += generate_latest(metrics_registry)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    def require_station() -> ServedStation:
        if station is None:
            raise HTTPException(404, "no station is attached to this API: triggers and pushed frames need a "
                                     "running line station (inspect-app line ... with an API port)")
        return station

    def station_answer(outcome: Mapping[str, Any]) -> dict[str, Any]:
        """The station's ``{"accepted": bool, "reason": ...}`` as 202, or 409 with its reason."""
        if outcome.get("accepted") is False:
            raise HTTPException(409, f"the station refused: {outcome.get('reason') or 'no reason given'}")
        return {"accepted": True, **outcome}

    @app.post("/trigger", status_code=202, summary="External trigger (PLC, light barrier) for the attached station")
    def trigger(_client: ApiClient = writer) -> dict[str, Any]:
        return station_answer(require_station().trigger())

    @app.post("/frames", status_code=202, summary="Push one image (one part) to the attached station")
    def frames(file: Annotated[UploadFile, File(description="The encoded image.")],
               _client: ApiClient = writer) -> dict[str, Any]:
        target = require_station()
        name, data = read_upload(file, "pushed")
        return station_answer(target.push(data, name))

    return app
