"""Batch QA reports: a folder inspected now (in this process or on Ray) or stored results,
summarised as a self-contained HTML page, the same page as PDF, and per-image CSV/JSON.

Names are imported on first use so that the CLI (which imports ``reports.commands``) stays light.
"""

__all__ = ["ReportSummary", "build_report"]


def __getattr__(name: str):
    if name in __all__:
        from inspect_app.reports import build

        return getattr(build, name)
    raise AttributeError(f"module 'inspect_app.reports' has no attribute {name!r}")
