"""Inspection results and the operators' feedback on them: recording (the row is committed
before ``add_result`` returns; images follow through ``ImageRetention``), explanations written
later, filtered queries and counts, and the feedback export."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import UTC, datetime
from typing import TypeVar, Unpack

import numpy as np
from sqlalchemy import Select, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from inspect_app.results import InspectionResult, Verdict
from inspect_app.store.database import Database, StoreError
from inspect_app.store.images import ImageJob, ImageRetention
from inspect_app.store.models import FeedbackRow, ResultRow, utc_now
from inspect_app.store.records import (
    FEEDBACK_KINDS,
    FeedbackEntry,
    FeedbackExport,
    FeedbackKind,
    ResultFilter,
    StoredResult,
)

Row = TypeVar("Row")  # what a single-entity select returns (a row class, a count)


def parse_feedback_kind(text: str) -> FeedbackKind:
    """``text`` as a ``FeedbackKind``; a ``StoreError`` names the choices otherwise."""
    for kind in FEEDBACK_KINDS:
        if text == kind:
            return kind
    raise StoreError(f"unknown feedback kind {text!r}: choose one of {', '.join(FEEDBACK_KINDS)}")


def parse_verdict(text: Verdict | str) -> Verdict:
    """A verdict given in any case; a ``StoreError`` names the choices otherwise."""
    try:
        return Verdict(text.upper())
    except ValueError:
        raise StoreError(f"unknown verdict {text!r}: use {', '.join(Verdict)}") from None


def _feedback_entry(row: FeedbackRow) -> FeedbackEntry:
    return FeedbackEntry(id=row.id, result_id=row.result_id, kind=parse_feedback_kind(row.kind), note=row.note,
                         user=row.user, time=row.time)


def _stored(row: ResultRow) -> StoredResult:
    return StoredResult(
        id=row.id, time=row.time, station=row.station, product=row.product, profile_version=row.profile_version,
        lot=row.lot, file=row.file, verdict=Verdict(row.verdict), score=row.score, threshold=row.threshold,
        raw_score=row.raw_score, regions=list(row.regions or []), error=row.error, explanation=row.explanation,
        explanation_source=row.explanation_source, image_path=row.image_path, overlay_path=row.overlay_path,
        feedback=[_feedback_entry(f) for f in row.feedback], mode=row.mode, timings_ms=dict(row.timings_ms or {}),
        frame_key=row.frame_key)


def _filtered(stmt: Select[Row], filters: ResultFilter) -> Select[Row]:
    if filters.get("product") is not None:
        stmt = stmt.where(ResultRow.product == filters["product"])
    verdict = filters.get("verdict")
    if verdict is not None:
        verdicts = [verdict] if isinstance(verdict, str) else list(verdict)
        stmt = stmt.where(ResultRow.verdict.in_([str(parse_verdict(v)) for v in verdicts]))
    if filters.get("since") is not None:
        stmt = stmt.where(ResultRow.time >= filters["since"])
    if filters.get("until") is not None:
        stmt = stmt.where(ResultRow.time < filters["until"])
    if filters.get("lot") is not None:
        stmt = stmt.where(ResultRow.lot == filters["lot"])
    if filters.get("station") is not None:
        stmt = stmt.where(ResultRow.station == filters["station"])
    return stmt


class ResultLog:
    """Results (``add_result`` ... ``products``) and feedback (``add_feedback``, ``feedback``)."""

    def __init__(self, database: Database, images: ImageRetention):
        self._db = database
        self._images = images

    def add_result(self, result: InspectionResult, *, station: str = "local", lot: str | None = None,
                   image: np.ndarray | None = None, time: datetime | None = None, frame_key: str | None = None,
                   publish_pending: bool = False) -> int:
        """Store one result and return its id. The row is committed before this returns; the frame
        (``image``, else the file ``result.file``) and its overlay are written in the background for
        every FAIL and every Nth PASS (``RetentionPolicy``). ``image`` is kept by reference until
        written: do not modify it in place afterwards. A naive ``time`` is UTC; the default is now.

        ``frame_key`` is the frame's identity at ``station``: a result for a frame already stored
        (a replay, a restart after a crash) is not stored again, and the first row's id comes back.
        ``publish_pending`` marks a result whose MQTT message is not acknowledged yet (``mark_published``)."""
        when = time or utc_now()
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        row = ResultRow(
            time=when, station=station, product=result.product, profile_version=result.profile_version,
            mode=result.mode, lot=lot, file=result.file, verdict=str(Verdict(result.verdict)), score=result.score,
            threshold=result.threshold, raw_score=result.raw_score, regions=[r.to_dict() for r in result.regions],
            timings_ms=dict(result.timings_ms), error=result.error, explanation=result.explanation,
            explanation_source=result.explanation_source, frame_key=frame_key, publish_pending=publish_pending)
        try:
            with self._db.transaction() as session:
                session.add(row)
        except IntegrityError:
            existing = self.find_frame(station, frame_key) if frame_key is not None else None
            if existing is None:
                raise
            return existing
        self._images.keep(ImageJob(row.id, result, image, when, station))
        return row.id

    def find_frame(self, station: str, frame_key: str) -> int | None:
        """The id of the result stored for this frame at this station, or None."""
        stmt = select(ResultRow.id).where(ResultRow.station == station, ResultRow.frame_key == frame_key)
        with self._db.session() as session:
            return session.execute(stmt).scalar_one_or_none()

    def mark_published(self, rids: Collection[int]) -> None:
        """The broker acknowledged these results' MQTT messages."""
        if rids:
            with self._db.transaction() as session:
                session.execute(update(ResultRow).where(ResultRow.id.in_(list(rids))).values(publish_pending=False))

    def pending_publication(self, station: str, limit: int = 1000) -> list[StoredResult]:
        """The station's results whose MQTT message was never acknowledged (a crash took the
        in-memory outbox), oldest first: a restarted station publishes them again with their id."""
        stmt = (select(ResultRow).where(ResultRow.station == station, ResultRow.publish_pending.is_(True))
                .options(selectinload(ResultRow.feedback)).order_by(ResultRow.id).limit(limit))
        with self._db.session() as session:
            return [_stored(row) for row in session.scalars(stmt)]

    def set_explanation(self, rid: int, text: str, source: str) -> None:
        """Replace the result's explanation (e.g. the language model's text after the template's)."""
        with self._db.transaction() as session:
            done = session.execute(update(ResultRow).where(ResultRow.id == rid).values(
                explanation=text, explanation_source=source)).rowcount  # type: ignore[attr-defined]
        if not done:
            raise StoreError(f"no stored result with id {rid}")

    def get(self, rid: int) -> StoredResult | None:
        """The result with its feedback, or None."""
        with self._db.session() as session:
            row = session.get(ResultRow, rid, options=[selectinload(ResultRow.feedback)])
            return _stored(row) if row is not None else None

    def query(self, *, limit: int = 1000, offset: int = 0, newest_first: bool = True,
              **filters: Unpack[ResultFilter]) -> list[StoredResult]:
        """Results matching every given filter (see ``ResultFilter``), with their feedback."""
        order = (ResultRow.time.desc(), ResultRow.id.desc()) if newest_first else (ResultRow.time, ResultRow.id)
        stmt = (_filtered(select(ResultRow), filters).options(selectinload(ResultRow.feedback)).order_by(*order)
                .limit(max(0, limit)).offset(max(0, offset)))
        with self._db.session() as session:
            return [_stored(row) for row in session.scalars(stmt)]

    def iter_results(self, batch_size: int = 1000, **filters: Unpack[ResultFilter]) -> Iterator[StoredResult]:
        """All matching results, oldest first, fetched in batches (for exports of any size)."""
        offset = 0
        while True:
            batch = self.query(limit=batch_size, offset=offset, newest_first=False, **filters)
            yield from batch
            if len(batch) < batch_size:
                return
            offset += batch_size

    def count(self, **filters: Unpack[ResultFilter]) -> int:
        """How many results match every given filter."""
        stmt = _filtered(select(func.count(ResultRow.id)), filters)
        with self._db.session() as session:
            return int(session.execute(stmt).scalar_one())

    def products(self) -> list[str]:
        """Products that have stored results."""
        with self._db.session() as session:
            return sorted(p for p in session.scalars(select(ResultRow.product).distinct()) if p)

    def add_feedback(self, rid: int, kind: FeedbackKind, note: str = "", user: str = "") -> None:
        """An operator's word on a stored result."""
        kind = parse_feedback_kind(kind)
        with self._db.transaction() as session:
            if session.get(ResultRow, rid) is None:
                raise StoreError(f"no stored result with id {rid}")
            session.add(FeedbackRow(result_id=rid, kind=kind, note=note or "", user=user or "", time=utc_now()))

    def feedback(self, product: str | None = None) -> list[FeedbackExport]:
        """Every feedback entry with the facts of its result, oldest first (for CSV/JSON export)."""
        stmt = select(FeedbackRow, ResultRow).join(ResultRow, FeedbackRow.result_id == ResultRow.id)
        if product is not None:
            stmt = stmt.where(ResultRow.product == product)
        with self._db.session() as session:
            return [FeedbackExport(**_feedback_entry(fb), product=res.product, station=res.station, lot=res.lot,
                                   file=res.file, verdict=Verdict(res.verdict), score=res.score,
                                   result_time=res.time, image_path=res.image_path, overlay_path=res.overlay_path)
                    for fb, res in session.execute(stmt.order_by(FeedbackRow.id))]
