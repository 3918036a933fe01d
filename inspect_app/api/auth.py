"""Who may call the API: bearer tokens from the store (``inspect-app token add``), roles, an
allow-list of scraper addresses for ``/metrics``, and a per-client rate limit.

| route | roles |
|---|---|
| ``GET /health`` | anyone (liveness for load balancers and Docker) |
| ``GET /results``, ``GET /results/{id}``, ``GET /metrics`` | viewer, admin (``/metrics``: or an allowed address) |
| ``POST /inspect``, ``POST /trigger``, ``POST /frames`` | station, admin |

A token is looked up by its hash on the first request and cached for ``TOKEN_CACHE_S``, so a new
or revoked token counts within that time, without a restart. Each client (token, or address for
the allow-list) has a token bucket; a station's own token gets ``station_rate_per_s``, set far
above any frame rate, so a line is never throttled below its pace.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from fastapi import HTTPException, Request

from inspect_app.api.metrics import ApiMetrics
from inspect_app.store import ApiClient, ApiRole, TokenVerifier

TOKEN_CACHE_S = 2.0
READERS: frozenset[ApiRole] = frozenset({"viewer", "admin"})
WRITERS: frozenset[ApiRole] = frozenset({"station", "admin"})


@dataclass(frozen=True)
class RateLimits:
    """Requests per second (sustained) and burst, per client."""

    per_s: float = 50.0
    burst: int = 100
    station_per_s: float = 500.0  # a station's own token: far above any line's frame rate


class RateLimiter:
    """Token buckets by client key; ``take`` returns the seconds to wait, or 0 when allowed."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill)
        self._lock = threading.Lock()

    def take(self, key: str, per_s: float, burst: float) -> float:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (burst, now))
            tokens = min(burst, tokens + (now - last) * per_s)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                return (1 - tokens) / per_s
            self._buckets[key] = (tokens - 1, now)
            return 0.0


class TokenCache:
    """``verify`` through the store, remembered for ``ttl_s`` (valid and invalid answers alike)."""

    def __init__(self, store: TokenVerifier, ttl_s: float = TOKEN_CACHE_S):
        self.store, self.ttl_s = store, ttl_s
        self._seen: dict[str, tuple[ApiClient | None, float]] = {}
        self._lock = threading.Lock()

    def verify(self, token: str) -> ApiClient | None:
        now = time.monotonic()
        with self._lock:
            hit = self._seen.get(token)
        if hit is not None and now - hit[1] < self.ttl_s:
            return hit[0]
        client = self.store.verify_token(token)
        with self._lock:
            if len(self._seen) > 10_000:  # a flood of made-up tokens must not grow memory
                self._seen.clear()
            self._seen[token] = (client, now)
        return client


class Guard:
    """Builds the route dependencies: ``Guard.allow(roles)`` admits a request or raises 401/403/429."""

    def __init__(self, store: TokenVerifier, metrics: ApiMetrics, limits: RateLimits,
                 allowed_addresses: Collection[str] = ()):
        self.tokens = TokenCache(store)
        self.metrics, self.limits = metrics, limits
        self.allowed_addresses = frozenset(allowed_addresses)
        self.limiter = RateLimiter()

    def _refuse(self, status: int, reason: str, detail: str, headers: dict[str, str] | None = None) -> HTTPException:
        self.metrics.refused.labels(reason).inc()
        return HTTPException(status, detail, headers=headers)

    def _limit(self, key: str, per_s: float) -> None:
        wait = self.limiter.take(key, per_s, max(self.limits.burst, per_s))
        if wait:
            raise self._refuse(429, "rate_limited", f"too many requests: retry in {wait:.2f} s",
                               {"Retry-After": str(max(1, round(wait)))})

    def client(self, request: Request) -> ApiClient | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self.tokens.verify(token.strip())

    def allow(self, roles: frozenset[ApiRole], *,
              address_allowed: bool = False) -> Callable[[Request], ApiClient | None]:
        def dependency(request: Request) -> ApiClient | None:
            client = self.client(request)
            address = request.client.host if request.client else ""
            if client is None:
                if address_allowed and address in self.allowed_addresses:
                    self._limit(f"address:{address}", self.limits.per_s)
                    return None
                raise self._refuse(401, "unauthenticated", "this endpoint needs 'Authorization: Bearer <token>' "
                                   "(inspect-app token add NAME --role ...)", {"WWW-Authenticate": "Bearer"})
            if client.role not in roles:
                raise self._refuse(403, "forbidden", f"token {client.name!r} ({client.role}) may not do this: it "
                                   f"needs the role {' or '.join(sorted(roles))}")
            self._limit(f"token:{client.name}",
                        self.limits.station_per_s if client.role == "station" else self.limits.per_s)
            return client

        return dependency
