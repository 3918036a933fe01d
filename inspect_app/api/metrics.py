"""The API's own Prometheus metrics, in a registry of its own so that several apps in one process
(tests, an API beside a station) never collide."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from inspect_app.store import ImageUsage

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
        self.refused = Counter("inspect_api_refused", "Requests refused: unauthenticated (401), forbidden (403), "
                               "rate_limited (429)", ["reason"], registry=r)

    def watch_images(self, usage: Callable[[], ImageUsage]) -> None:
        """Serve the store's image quota figures, read at every scrape."""
        self.registry.register(_ImageQuota(usage))


class _ImageQuota(Collector):
    def __init__(self, usage: Callable[[], ImageUsage]):
        self.usage = usage

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        try:
            usage = self.usage()
        except Exception:  # the store is away: /metrics still answers, without these
            return
        yield GaugeMetricFamily("inspect_store_images_bytes", "Result images and overlays on disk", value=usage.bytes)
        yield GaugeMetricFamily("inspect_store_images_quota_bytes", "Disk quota for result images",
                                value=usage.max_bytes)
        evicted = CounterMetricFamily("inspect_store_images_evicted", "Results whose images the quota removed "
                                      "(PASS first, oldest first)", labels=["verdict"])
        for verdict, n in sorted(usage.evicted.items()):
            evicted.add_metric([verdict], n)
        yield evicted
