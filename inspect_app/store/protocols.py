"""What the store's consumers need of it, as ``Protocol``s: a feature types its store parameter
with the narrowest one (a test can then hand it any object with those methods), and
``ResultsStore`` satisfies them all (checked by mypy in ``store.py``).

- ``ResultRecorder``: write results and their late explanations (line station, API, UI).
- ``StationReporter``: heartbeats and alarms (line station).
- ``SettingsReader``: a product's saved settings (line station, API).
- ``ResultReader``: read results back (API, reports, UI).
- ``FrameLedger``: exactly-once bookkeeping of a line station (frames stored, MQTT acknowledged).
- ``StationLeaseHolder``: one live station per name.
- ``TokenVerifier``: API tokens and the image quota figures (API).
- ``LineStore`` and ``ApiStore``: what ``line.Station`` and ``api.create_app`` use, combined.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from datetime import datetime
from typing import Any, Protocol, Unpack

import numpy as np

from inspect_app.results import InspectionResult
from inspect_app.store.records import ImageUsage, ResultFilter, StoredResult
from inspect_app.store.tokens import ApiClient


class ResultRecorder(Protocol):
    def add_result(self, result: InspectionResult, *, station: str = ..., lot: str | None = ...,
                   image: np.ndarray | None = ..., time: datetime | None = ..., frame_key: str | None = ...,
                   publish_pending: bool = ...) -> int: ...

    def set_explanation(self, rid: int, text: str, source: str) -> None: ...

    def flush(self, timeout: float | None = None) -> bool: ...


class StationReporter(Protocol):
    def update_station_status(self, station: str, status: Mapping[str, Any]) -> None: ...

    def raise_alarm(self, kind: str, message: str, station: str = ...) -> None: ...


class SettingsReader(Protocol):
    def get_settings(self, product: str) -> dict[str, Any]: ...


class ResultReader(Protocol):
    @property
    def display_url(self) -> str: ...

    def get(self, rid: int) -> StoredResult | None: ...

    def query(self, *, limit: int = ..., offset: int = ..., newest_first: bool = ...,
              **filters: Unpack[ResultFilter]) -> list[StoredResult]: ...

    def iter_results(self, batch_size: int = ..., **filters: Unpack[ResultFilter]) -> Iterator[StoredResult]: ...

    def count(self, **filters: Unpack[ResultFilter]) -> int: ...

    def products(self) -> list[str]: ...


class FrameLedger(Protocol):
    def find_frame(self, station: str, frame_key: str) -> int | None: ...

    def mark_published(self, rids: Collection[int]) -> None: ...

    def pending_publication(self, station: str, limit: int = ...) -> list[StoredResult]: ...


class StationLeaseHolder(Protocol):
    def claim_station(self, station: str, owner: str, stale_after_s: float) -> None: ...

    def renew_station(self, station: str, owner: str) -> bool: ...

    def release_station(self, station: str, owner: str) -> None: ...


class TokenVerifier(Protocol):
    def verify_token(self, token: str) -> ApiClient | None: ...

    def image_usage(self) -> ImageUsage: ...


class LineStore(ResultRecorder, StationReporter, SettingsReader, FrameLedger, StationLeaseHolder, Protocol):
    """What a line station records to and reads its product settings from."""


class ApiStore(ResultRecorder, ResultReader, SettingsReader, TokenVerifier, Protocol):
    """What the REST API records to and serves results from."""

    @property
    def dialect(self) -> str: ...

    def ping(self) -> bool: ...
