"""Reports: a batch QA report (``inspect_app.reports.build_report``) for a folder of images or
for stored results in a time range, built in the background, then downloaded."""

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import streamlit as st

from inspect_app.errors import InspectAppError
from inspect_app.progress import ProgressCallback
from inspect_app.ui import auth, resources
from inspect_app.ui.jobs import BackgroundJob
from inspect_app.ui.widgets import job_progress, store_or_error

REPORT_PREFIX = "report:"
DOWNLOADS = (("html", "Report (HTML)", "text/html"), ("pdf", "Report (PDF)", "application/pdf"),
             ("csv", "Results (CSV)", "text/csv"), ("json", "Results (JSON)", "application/json"))

cfg = auth.page_start("Reports")
user = auth.require_user(cfg)
store = store_or_error(cfg)
if user is None:
    st.stop()

stored_products = store.products() if store is not None else []
choices = sorted(set(resources.products(cfg)) | set(stored_products))
if not choices:
    st.info("No products yet: fit one on the Products page, or inspect parts so that results are stored.")
    st.stop()
product = st.selectbox("Product", choices, key="reports_product")
source = st.radio("Report on", ["Stored results in a time range", "A folder of images (inspected now)"],
                  horizontal=True, key="reports_source")
from_store = source.startswith("Stored")
if from_store:
    cols = st.columns(3)
    since = cols[0].date_input("From (UTC day)", value=None, key="reports_since")
    until = cols[1].date_input("To (UTC day)", value=None, key="reports_until")
    lot = cols[2].text_input("Lot", key="reports_lot").strip()
else:
    folder = st.text_input("Folder of images", key="reports_folder").strip()
explain = st.checkbox("Explain FAIL parts", value=True, key="reports_explain")
out_text = st.text_input(f"Write the report to (empty: {cfg.reports_dir}/{product}-<UTC time>)", key="reports_out")

board = resources.jobs()
job_key = REPORT_PREFIX + user.name  # one report at a time per user; it survives leaving the page
job: BackgroundJob | None = board.get(job_key)
if st.button("Build report", key="reports_build", type="primary", disabled=job is not None and job.running):
    out_dir = out_text.strip() or str(cfg.reports_dir / f"{product}-{datetime.now(UTC):%Y%m%d-%H%M%S}")
    try:
        if from_store:
            if store is None:
                raise InspectAppError("the results store cannot be opened (see above)")
            size = store.count(product=product, lot=lot or None)
            args = {"store": store, "lot": lot or None,
                    "since": datetime.combine(since, time.min, UTC) if since else None,
                    "until": datetime.combine(until, time.min, UTC) + timedelta(days=1) if until else None}
        else:
            if not folder:
                raise InspectAppError("give the folder of images to report on")
            args = {"images": folder}
            size = max(1, sum(1 for _ in Path(folder).glob("*"))) if Path(folder).is_dir() else 1

        def build(progress: ProgressCallback, product=product, out_dir=out_dir, args=args, explain=explain):
            from inspect_app.reports import build_report

            return build_report(product, out_dir, models_dir=cfg.models_dir, explain=explain, progress=progress,
                                **args)

        job = board.start(job_key, product, build, kind="report:" + ("store" if from_store else "folder"),
                          size=size, costs=resources.stage_costs(cfg), owner=user.name)
        auth.audit(cfg, "report.build", {"product": product, "out_dir": out_dir,
                                         **{k: str(v) for k, v in args.items() if k != "store" and v is not None}})
    except InspectAppError as exc:
        st.error(str(exc))


if job is not None and job.running:
    job_progress(job, f"Building the {job.name} report")
elif job is not None and job.error:
    st.error(f"The report could not be built: {job.error}")
elif job is not None:
    summary = job.result
    rate = "-" if summary.defect_rate is None else f"{summary.defect_rate:.1%}"
    ci = "" if summary.defect_rate_ci95 is None else \
        f" (95 % CI {summary.defect_rate_ci95[0]:.1%}–{summary.defect_rate_ci95[1]:.1%})"
    st.success(f"Report for {summary.product}: {summary.n_images} parts, PASS {summary.n_pass}, FAIL {summary.n_fail}, "
               f"not inspected {summary.n_error}; defect rate {rate}{ci}. Written to {summary.out_dir}.")
    buttons = st.columns(len(DOWNLOADS))
    for col, (attr, label, mime) in zip(buttons, DOWNLOADS, strict=True):
        path = getattr(summary, attr)
        if path is not None and path.is_file():
            col.download_button(label, path.read_bytes(), file_name=f"{summary.out_dir.name}-{path.name}", mime=mime,
                                key=f"reports_dl_{attr}")
