"""Run screen: the one screen an operator reads at a glance. The current part large with its
overlay, the verdict by word, shape and colour, counters and yield for the plant's shift and the
lot, the last parts as a strip (click one to open it), the defect-rate trend, the station's state
(online / degraded / offline with its heartbeat age) and the latest explanation. It follows a
line station's results or the manual inspections made on this PC, refreshing itself every
``REFRESH_S``; as a wall screen (``?kiosk``) it is read-only."""

import html
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import streamlit as st

from inspect_app.errors import InspectAppError
from inspect_app.results import THRESHOLD, Verdict
from inspect_app.store import StoredResult
from inspect_app.ui import auth, resources
from inspect_app.ui.inspection import inspect_uploads
from inspect_app.ui.runboard import (
    PLANT_SETTINGS_KEY,
    STRIP_LENGTH,
    PlantShifts,
    StationCondition,
    StationHealth,
    counters,
    defect_trend,
    picture_of,
    station_condition,
    trend_svg,
)
from inspect_app.ui.uploads import Upload
from inspect_app.ui.widgets import VERDICT_MARKS, store_or_error, verdict_banner

REFRESH_S = 0.8  # nominal; the browser's timer and the run itself add jitter, and the target is "at least every 1 s"
TREND_PARTS = 200
TREND_PER_POINT = 10
OPEN_PARAM = "open"

cfg = auth.page_start(None)
kiosk = bool(st.session_state.get("kiosk"))
user = None if kiosk else auth.require_user(cfg)
store = store_or_error(cfg)
if store is None or (user is None and not kiosk):
    st.stop()
try:
    plant = PlantShifts.from_settings(store.get_settings(PLANT_SETTINGS_KEY))
except InspectAppError as exc:
    st.warning(f"Plant shifts in Settings are not usable ({exc}); counting from UTC shifts.")
    plant = PlantShifts()

requested = st.query_params.get(OPEN_PARAM, "")
if requested.isdigit():  # a part opened from the strip (a link)
    st.session_state["run_open"] = int(requested)

line_stations = [s["station"] for s in store.station_status()]
sources = line_stations + ([cfg.station] if cfg.station not in line_stations else [])
if kiosk:
    station = st.query_params.get("station") or sources[0]
else:
    head = st.columns([2, 2, 2, 1], vertical_alignment="bottom")
    station = head[0].selectbox("Show", sources, key="run_station", format_func=lambda s: (
        "this PC (manual)" if s == cfg.station else f"line station {s}"))
    if station == cfg.station:
        products = resources.products(cfg)
        product = head[1].selectbox("Product", products, key="run_product") if products else None
        lot = head[2].text_input("Lot", key="run_lot").strip()
        with head[3].popover("Inspect", icon=":material/add_a_photo:", width="stretch"):
            files = st.file_uploader(f"Images of parts (up to {cfg.max_upload_mb:g} MB each)",
                                     accept_multiple_files=True, key="run_files")
            shot = st.camera_input("Webcam", key="run_camera") if st.toggle("Webcam", key="run_webcam") else None
        uploads = [Upload(f.name, f.getvalue()) for f in files or []]
        if shot is not None:
            uploads.append(Upload("webcam snapshot", shot.getvalue()))
        batch_key = (product, lot, tuple(u.digest for u in uploads))
        if uploads and product and st.session_state.get("run_batch") != batch_key:
            try:
                inspector, lock = resources.inspector(cfg, product)
                settings = resources.product_settings(cfg, product)
                explainer = resources.explainer(cfg, settings.get("language", "en")) \
                    if settings.get("explanations", True) else None
                inspect_uploads(inspector, uploads, cfg.max_upload_bytes, store=store, station=cfg.station, lot=lot,
                                explainer=explainer, lock=lock)
                st.session_state["run_batch"] = batch_key
                st.session_state.pop("run_open", None)
                auth.audit(cfg, "inspect", {"product": product, "images": len(uploads), "from": "run screen"})
            except InspectAppError as exc:
                st.error(f"Product {product!r} cannot be used: {exc}")
    else:
        head[1].caption("Line results appear here as the station stores them.")


def local_time(when: datetime) -> str:
    return plant.local(when).strftime("%H:%M:%S")


def station_badge(condition: StationCondition | None) -> None:
    text = "This PC · manual inspections" if condition is None else f"Station {station}: {condition.text}"
    health = StationHealth.ONLINE if condition is None else condition.health
    st.markdown(f'<div class="station-{health.value}">{text}</div>', unsafe_allow_html=True)


def open_part(result_id: int | None) -> None:
    st.session_state["run_open"] = result_id
    if result_id is None:
        st.query_params.pop(OPEN_PARAM, None)


def strip_html(parts: list[StoredResult], opened_id: int | None) -> str:
    """The last parts as one row of links (word in the tooltip, shape and colour on the mark), each
    opening its part. Links, not 20 buttons: buttons keyed by part were remounted on every refresh
    and cost the wall-screen browser ~0.08 core (benchmarks/ui_refresh.py)."""
    params = st.query_params.to_dict()
    marks = "".join(
        f'<a class="strip-mark strip-{r.verdict.value.lower()}{" strip-open" if r.id == opened_id else ""}" '
        f'target="_self" href="?{html.escape(urlencode({**params, OPEN_PARAM: r.id}))}" '
        f'title="{r.verdict.value} · part {r.id} · {local_time(r.time)}">{VERDICT_MARKS[r.verdict.value]}</a>'
        for r in parts)
    return f'<nav class="run-strip" aria-label="last parts">{marks}</nav>'


def mark_false_reject(result_id: int) -> None:
    assert user is not None
    store.add_feedback(result_id, "false_reject", "marked on the run screen", user=user.name)
    auth.audit(cfg, "feedback.add", {"result_id": result_id, "kind": "false_reject", "from": "run screen"})


@st.fragment(run_every=REFRESH_S)
def run_board() -> None:
    auth.full_rerun_if_signed_in()
    manual = station == cfg.station and station not in line_stations
    found = [] if manual else store.station_status(station)
    recent = store.query(station=station, limit=TREND_PARTS)
    opened_id = st.session_state.get("run_open")
    part = store.get(opened_id) if opened_id is not None else None
    if part is None or part.station != station:  # none opened, or a stale link (deleted, another station's)
        opened_id = None
        part = recent[0] if recent else None
    condition = None if manual else station_condition(found[0] if found else None, datetime.now(UTC))
    stale = condition is not None and condition.health == StationHealth.OFFLINE
    if stale:  # across the whole screen: nobody may take the last verdict for a live one
        station_badge(condition)
    left, right = st.columns([3, 2], gap="medium")
    with right:
        if not stale:
            station_badge(condition)
        if part is None:
            st.info("No part inspected yet." + (" Use Inspect (top right) to inspect one." if manual and not kiosk
                                                else ""))
        else:
            detail = f"part {part.id} · score {part.score:.3f} (limit {THRESHOLD:.2f})" if part.score is not None \
                else f"part {part.id} · {part.error or 'not inspected'}"
            if stale:
                detail = f"LAST PART BEFORE THE STATION STOPPED ({local_time(part.time)}) · {detail}"
            verdict_banner(part.verdict, detail, stale=stale)
        label, shift_start = plant.current(datetime.now(UTC))
        shift = counters(store, station=station, since=shift_start)
        cells = st.columns(4)
        cells[0].metric("PASS ●", shift.passed)
        cells[1].metric("FAIL ■", shift.failed)
        cells[2].metric("ERROR ▲", shift.errors)
        cells[3].metric("Yield", "-" if shift.yield_rate is None else f"{shift.yield_rate:.1%}")
        lot_text = ""
        if part is not None and part.lot:
            in_lot = counters(store, station=station, lot=part.lot)
            lot_text = (f" · lot {part.lot}: {in_lot.passed} / {in_lot.failed} / {in_lot.errors}, yield "
                        f"{'-' if in_lot.yield_rate is None else f'{in_lot.yield_rate:.1%}'}")
        zone = "" if label.endswith(plant.timezone) else f" ({plant.timezone})"
        st.caption(f"{label}{zone}{lot_text}")
        if part is not None:
            if part.explanation:
                st.info(part.explanation)
            elif part.verdict == Verdict.FAIL:
                st.caption("No explanation yet.")
            if user is not None and part.verdict == Verdict.FAIL:
                marked = any(f["kind"] == "false_reject" for f in part.feedback)
                st.button("Marked as good (false reject)" if marked else "This part is good (false reject)",
                          key=f"run_false_reject_{part.id}", disabled=marked, icon=":material/thumb_up:",
                          on_click=mark_false_reject, args=(part.id,),
                          help="An engineer reviews it on the History page before the product learns it.")
            if opened_id is not None:
                st.button("Back to the live part", key="run_back", on_click=open_part, args=(None,))
        trend = defect_trend(recent, TREND_PER_POINT)
        if len(trend) >= 2:
            st.markdown(f"**Defect rate** · now {trend[-1].defect_rate_pct:.0f} % (per {TREND_PER_POINT} parts)")
            st.markdown(trend_svg(trend, local_time(trend[0].time), local_time(trend[-1].time)),
                        unsafe_allow_html=True)
        else:
            st.caption(f"The defect-rate trend starts after {2 * TREND_PER_POINT} parts.")
    with left, st.container(key="run_current_offline" if stale else "run_current"):
        shown = part if part is None or opened_id is not None or picture_of(part)[0] else \
            next((r for r in recent if picture_of(r)[0]), part)
        if shown is not None:
            path, what = picture_of(shown)
            caption = (f"part {shown.id} ({shown.verdict.value}) · {Path(shown.file).name if shown.file else '-'} · "
                       f"{local_time(shown.time)} · {what} · profile {shown.profile_version or '-'}")
            if part is not None and shown.id != part.id:
                caption += f" · the newest part, {part.id}, has no picture: PASS images are sampled"
            if path and Path(path).is_file():
                st.image(path, caption=caption, width="stretch")
            else:
                st.caption(f"{caption} ({'image no longer on disk' if path else 'no picture'})")
    strip = list(reversed(recent[:STRIP_LENGTH]))
    if strip:
        st.markdown(strip_html(strip, opened_id), unsafe_allow_html=True)

run_board()
