"""The API's own Prometheus metrics, in a registry of its own so that several apps in one process
(tests, an API beside a station) never collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ApiMetrics:
    """Names start with ``inspect_api_``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("inspect_api_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.request_latency = Histogram("inspect_api_request_seconds", "HTTP request latency by route", ["route"],
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.inspections = Counter("inspect_api_inspections", "Images inspected through POST /inspect",
                                   ["product", "verdict"], registry=r)
        self.inspection_latency = Histogram("inspect_api_inspection_seconds",
                                            "Decode + Inspector time of one uploaded image", ["product"],
                                            buckets=LATENCY_BUCKETS, registry=r)
        self.rejected_uploads = Counter("inspect_api_rejected_uploads", "Uploads refused (empty, too large, "
                                        "not an image, corrupt)", ["reason"], registry=r)
