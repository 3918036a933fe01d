"""The capture thread: reads the source through ``CameraLink`` (reconnects with backoff, records
gaps), skips and counts corrupt frames, asks the trigger which frames are parts and queues them
for inspection. A part that will not be inspected (queue full for too long, a trigger without a
frame, a corrupt file, the station stopping) is rejected: an ERROR result with an alarm, so that
every part the line showed the station has a result.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

from inspect_app.line.config import StationConfig
from inspect_app.line.health import Alarms
from inspect_app.line.inspection import LineInspector
from inspect_app.line.metrics import CameraState, StationMetrics
from inspect_app.line.output import LineResult, OutputStage
from inspect_app.line.queues import InspectQueue, Job
from inspect_app.line.sources import CameraLink, Frame, FrameSource, PushSource
from inspect_app.line.triggers import Decision, ExternalTrigger, PartPresentTrigger, TriggerPolicy
from inspect_app.results import InspectionResult, Verdict

log = logging.getLogger(__name__)


class Capture:
    def __init__(self, config: StationConfig, source: FrameSource, policy: TriggerPolicy, jobs: InspectQueue,
                 output: OutputStage, metrics: StationMetrics, alarms: Alarms, inspector: LineInspector,
                 part_numbers: Iterator[int], stop: threading.Event, boot_id: str):
        self.config, self.source, self.policy, self.jobs = config, source, policy, jobs
        self.output, self.metrics, self.alarms, self.inspector = output, metrics, alarms, inspector
        self.part_numbers, self.boot_id = part_numbers, boot_id
        self.link = CameraLink(source, config.source, stop, on_state=self._camera_state, on_gap=self._camera_gap,
                               on_idle=self._expire_triggers)

    def run(self) -> None:
        unsettled = 0
        try:
            for frame in self.link.frames():
                self._expire_triggers()
                if frame is None:
                    continue
                self.metrics.frames_captured.inc()
                if frame.error is not None:
                    self._corrupt(frame)
                    continue
                decision = (Decision(self.source.kind, frame.captured_at, droppable=False) if frame.part
                            else self.policy.on_frame(frame))
                if isinstance(self.policy, PartPresentTrigger) and self.policy.unsettled > unsettled:
                    unsettled = self.policy.unsettled
                    self.alarms.raise_alarm("part_not_at_rest", "a part left the view without coming to rest: not "
                                            f"inspected ({unsettled} so far); check still_fraction/still_frames")
                if decision is not None:
                    self._submit(frame, decision)
                if self._admitted_enough():
                    log.info("max frames (%d) admitted: capture stops", self.config.max_frames)
                    break
        except Exception as exc:  # keep the accounting straight even on a bug in a source
            log.exception("capture stopped by an unexpected error")
            self.alarms.raise_alarm("capture_failed", f"capture stopped: {type(exc).__name__}: {exc}")
        finally:
            if isinstance(self.source, PushSource):  # accepted pushes are parts: inspect them too
                for frame in self.source.drain():
                    if frame.error is not None:
                        self._corrupt(frame)
                    else:
                        self._submit(frame, Decision("push", frame.captured_at, droppable=False))
            if isinstance(self.policy, ExternalTrigger):
                for triggered_at in self.policy.drain():
                    self.reject(next(self.part_numbers), "external", triggered_at,
                                "station stopped before a frame came")
            self.jobs.close()

    def frame_key(self, frame: Frame | None, seq: int) -> str:
        """A file's own identity, else this run's boot id and the part number: a restart never
        collides with the last run, and two identical camera frames are still two parts."""
        return frame.key if frame is not None and frame.key else f"run:{self.boot_id}#{seq}"

    def reject(self, seq: int, trigger: str, triggered_at: float, reason: str, name: str | None = None,
               frame: Frame | None = None) -> None:
        """A part that will not be inspected: an ERROR result (stored, sent to the reject topic) and an alarm."""
        self.metrics.parts_rejected.labels(reason.split(":")[0].split(" within")[0][:40]).inc()
        self.alarms.raise_alarm("part_rejected", f"part {seq} ({trigger}) rejected without inspection: {reason}")
        result = InspectionResult(name or f"{self.config.name}#{seq}", Verdict.ERROR, error=f"not inspected: {reason}",
                                  product=self.config.product, mode=self.inspector.mode,
                                  profile_version=self.inspector.profile_version)
        self.output.put(LineResult(seq, result, None, trigger, triggered_at, time.time(), self.frame_key(frame, seq),
                                   frame))

    def _admitted_enough(self) -> bool:
        n = self.config.max_frames
        return n is not None and self.metrics.snapshot().admitted >= n

    def _expire_triggers(self) -> None:
        for triggered_at in self.policy.expired(time.time()):
            self.reject(next(self.part_numbers), "external", triggered_at,
                        f"no camera frame within {self.config.trigger.timeout_s:.1f} s of the trigger")

    def _corrupt(self, frame: Frame) -> None:
        if frame.incomplete:  # a file never finished: a part all the same, with the reason
            self.reject(next(self.part_numbers), self.source.kind, frame.captured_at, f"incomplete file: {frame.error}",
                        name=frame.name, frame=frame)
            return
        self.metrics.corrupt_frames.inc()
        log.warning("corrupt frame skipped: %s", frame.error)
        if frame.part:  # a file or pushed image is a part: it must be rejected, not ignored
            self.reject(next(self.part_numbers), self.source.kind, frame.captured_at, f"corrupt image: {frame.error}",
                        name=frame.name, frame=frame)

    def _submit(self, frame: Frame, decision: Decision) -> None:
        seq = next(self.part_numbers)
        job = Job(seq, frame, decision.kind, decision.triggered_at, decision.droppable, self.frame_key(frame, seq))
        wait_s = 0 if job.droppable else self.config.pipeline.backpressure_s
        accepted, dropped = self.jobs.put(job, timeout=wait_s)
        with self.metrics.lock:  # one update: ``admitted`` (triggered - dropped + rejected) never jumps
            self.metrics.triggers.labels(decision.kind).inc()
            if dropped is not None or (not accepted and job.droppable):
                self.metrics.frames_dropped.inc()
        self.metrics.queue_depth.labels("inspect").set(len(self.jobs))
        if not accepted and not job.droppable:
            self.reject(seq, decision.kind, decision.triggered_at,
                        f"inspection queue full for {self.config.pipeline.backpressure_s:.1f} s", name=frame.name,
                        frame=frame)

    def _camera_state(self, state: CameraState) -> None:
        self.metrics.camera_state.state(state)
        if state == CameraState.RECONNECTING:
            self.alarms.raise_alarm("camera_lost", f"camera {self.config.source.uri} lost ({self.link.last_error}); "
                                    "reconnecting")

    def _camera_gap(self, gap_s: float) -> None:
        self.metrics.camera_gap.observe(gap_s)
        self.metrics.camera_reconnects.inc()
        log.info("camera reconnected after a %.1f s gap", gap_s)
