"""What every command module shares: the consoles, one-line user errors, progress bars and the
common options. Feature packages build their commands from these and register them with
``register(app)``; none of them imports ``inspect_app.cli``."""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from inspect_app.config import MODES, Mode
from inspect_app.errors import InspectAppError
from inspect_app.progress import ProgressCallback

P = ParamSpec("P")
R = TypeVar("R")

console = Console(stderr=True, soft_wrap=True)
out = Console()

ModelsDir = typer.Option(None, "--models-dir", help="Profiles folder (default ./models or $INSPECT_APP_MODELS_DIR).")
ModeOption = typer.Option("image-image", "--mode",
                          help="image-image (memory of good patches: the default), fused (adds the text-space "
                               "decoder: slower fit), image-text (text-space decoder), or zero-shot (OpenCLIP only).")


_exit_at_once = False


def exit_at_once_when_done() -> None:
    """Ask the ``inspect-app`` process to end right after this command returns, without the
    interpreter's finalization. For a line station whose results are all stored and flushed:
    finalization could only add risk (a collection walking the model's objects past the SIGTERM
    budget; a daemon explainer thread still loading weights in native code, which aborted the
    process with "terminate called without an active exception"). In-process callers of the
    Typer app are not affected: only ``cli.main`` honours it (``finish_process``)."""
    global _exit_at_once
    _exit_at_once = True


def finish_process(code: int | str | None) -> None:
    """End the process with ``code`` at once if the command asked for it; else return."""
    if not _exit_at_once:
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))


def parse_mode(value: str) -> Mode:
    """A ``--mode`` value, checked against the modes the product knows."""
    for mode in MODES:
        if value == mode:
            return mode
    raise InspectAppError(f"unknown mode {value!r}: choose one of {', '.join(MODES)}")


def user_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn expected failures into one clear line and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except InspectAppError as exc:
            console.print(f"[bold red]error:[/] {escape(str(exc))}")
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted: nothing was saved[/]")
            raise typer.Exit(130) from None

    return wrapper


@contextmanager
def progress_bar() -> Iterator[ProgressCallback]:
    """The Inspector's progress callback: a rich bar (counts, elapsed, ETA) on a terminal; on a log
    file or pipe, where a live bar shows nothing until a step ends, one line per step every 10 %
    or 30 s with the same counts and ETA."""
    if not console.is_terminal:
        yield LogProgress(lambda line: console.print(line, markup=False, highlight=False))
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as bar:
        tasks: dict[str, TaskID] = {}

        def update(done: int, total: int, stage: str, /) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


class LogProgress:
    """Progress as log lines, ``stage: done/total (pct), elapsed, ETA``: the display for log files and
    pipes (a live bar shows nothing there until a step ends) and for scripts such as the benchmarks."""

    def __init__(self, emit: Callable[[str], object], every_seconds: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self.emit, self.every, self.clock = emit, every_seconds, clock
        self.started: dict[str, float] = {}
        self.last: dict[str, tuple[float, int]] = {}

    def __call__(self, done: int, total: int, stage: str, /) -> None:
        now = self.clock()
        start = self.started.setdefault(stage, now)
        last_time, last_tenth = self.last.get(stage, (start, -1))
        tenth = 10 * done // max(total, 1)
        if done < total and tenth <= last_tenth and now - last_time < self.every:
            return
        self.last[stage] = (now, tenth)
        elapsed = now - start
        eta_text = f"ETA {_clock_text(elapsed / done * (total - done))}" if done > 0 else "ETA ?"
        self.emit(f"{stage}: {done}/{total} ({100 * done / max(total, 1):.0f} %), "
                  f"{_clock_text(elapsed)} elapsed, {eta_text}")


def _clock_text(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
