"""What the store hands back, as typed data: stored results, feedback, users, alarms and audit
entries, and the vocabularies (roles, feedback kinds) its inputs are checked against.

Feedback, alarm and audit entries are ``TypedDict``s: pages and exports use them as rows (keys,
CSV columns), and a ``TypedDict`` keeps that while telling the type checker every key and type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal, TypedDict, get_args

from inspect_app.results import Verdict

Role = Literal["engineer", "operator"]  # engineers fit, change thresholds and settings; operators inspect
ROLES: tuple[Role, ...] = get_args(Role)
# What an API token may do: a station posts images and triggers, a viewer reads results and
# metrics, an admin does both. The UI's engineer is an admin, its operator a viewer.
ApiRole = Literal["station", "viewer", "admin"]
API_ROLES: tuple[ApiRole, ...] = get_args(ApiRole)
API_ROLE_OF_USER: dict[Role, ApiRole] = {"engineer": "admin", "operator": "viewer"}
# What an operator says about a stored result: the verdict was wrong one way or the other, or right.
FeedbackKind = Literal["false_reject", "missed_defect", "confirmed"]
FEEDBACK_KINDS: tuple[FeedbackKind, ...] = get_args(FeedbackKind)


class ResultFilter(TypedDict, total=False):
    """Filters of ``query``/``count``/``iter_results``; each one given narrows the results (``since``
    inclusive, ``until`` exclusive, naive datetimes are UTC; ``verdict`` one or several, any case)."""

    product: str | None
    verdict: Verdict | str | Sequence[Verdict | str] | None
    since: datetime | None
    until: datetime | None
    lot: str | None
    station: str | None


class FeedbackEntry(TypedDict):
    id: int
    result_id: int
    kind: FeedbackKind
    note: str
    user: str
    time: datetime


class FeedbackExport(FeedbackEntry):
    """A feedback entry with the facts of its result (one row of the feedback export)."""

    product: str | None
    station: str
    lot: str | None
    file: str | None
    verdict: Verdict
    score: float | None
    result_time: datetime
    image_path: str | None
    overlay_path: str | None


class AlarmEntry(TypedDict):
    id: int
    time: datetime
    station: str
    kind: str
    message: str


class AuditEntry(TypedDict):
    id: int
    time: datetime
    user: str
    action: str
    detail: Any  # a dict of facts or a sentence, as the caller recorded it


# A station's last heartbeat: the status it reported (its own keys: state, fps, counts, ...) plus
# "station" and "updated_at" (UTC). The keys are the station's, so this stays a plain dict.
StationStatus = dict[str, Any]


@dataclass
class StoredResult:
    """One stored inspection result with its feedback (no anomaly map: that is not stored; the
    overlay image is, for FAILs and sampled PASSes)."""

    id: int
    time: datetime
    station: str
    product: str | None
    profile_version: str | None
    lot: str | None
    file: str | None
    verdict: Verdict
    score: float | None
    threshold: float | None
    raw_score: float | None
    regions: list[dict[str, Any]]
    error: str | None
    explanation: str | None
    explanation_source: str | None
    image_path: str | None
    overlay_path: str | None
    feedback: list[FeedbackEntry] = field(default_factory=list)
    mode: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    frame_key: str | None = None  # the frame's identity at its station (line results)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: times as ISO 8601, the verdict as its word."""
        out = asdict(self)
        out["time"] = self.time.isoformat()
        out["verdict"] = str(self.verdict)
        for item in out["feedback"]:
            item["time"] = item["time"].isoformat()
        return out


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    created: datetime
    has_password: bool


@dataclass(frozen=True)
class ApiToken:
    """An API token as listed (the token itself is shown once, when created, and never stored)."""

    name: str
    role: ApiRole
    created: datetime
    created_by: str
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class ImageUsage:
    """Result images on disk against the quota, and how many results lost theirs to it."""

    files: int
    bytes: int
    max_bytes: int
    evicted: dict[str, int]  # verdict word -> results whose images the quota removed (this process)
