"""Live line: a running station's heartbeat and its latest parts from the results store,
refreshed in place every few seconds (``st.fragment(run_every=...)``)."""

from datetime import UTC, datetime
from pathlib import Path

import streamlit as st

from inspect_app.ui import auth
from inspect_app.ui.widgets import region_rows, store_or_error, verdict_banner

REFRESH_S = 2.0
STALE_S = 15.0  # a heartbeat older than this means the station is not running

cfg = auth.page_start("Live line")
user = auth.require_user(cfg)
store = store_or_error(cfg)
if user is None or store is None:
    st.stop()

stations = [s["station"] for s in store.station_status()]
if not stations:
    st.info("No station has reported yet. Start one with `inspect-app line --config station.yaml`; "
            "it appears here with its first heartbeat.")
    st.stop()
cols = st.columns([3, 1])
station = cols[0].selectbox("Station", stations, key="live_station")
last_n = cols[1].number_input("Last parts", min_value=5, max_value=200, value=20, step=5, key="live_n")


@st.fragment(run_every=REFRESH_S)
def live_view() -> None:
    found = store.station_status(station)
    if not found:
        st.warning(f"Station {station} has no status any more.")
        return
    status = found[0]
    age = (datetime.now(UTC) - status["updated_at"]).total_seconds()
    state = status.get("state", "?") if age <= STALE_S else f"no heartbeat for {age:.0f} s"
    camera = status.get("camera") or {}
    counts = status.get("counts") or {}
    rate = status.get("defect_rate")
    metrics = st.columns(6)
    metrics[0].metric("State", state)
    metrics[1].metric("Camera", camera.get("state", "?"), help=f"reconnects: {camera.get('reconnects', 0)}")
    metrics[2].metric("Frame rate", f"{status.get('fps', 0):.1f} /s")
    metrics[3].metric("PASS / FAIL / ERROR",
                      f"{counts.get('PASS', 0)} / {counts.get('FAIL', 0)} / {counts.get('ERROR', 0)}")
    metrics[4].metric("Defect rate", "-" if rate is None else f"{rate:.1%}")
    metrics[5].metric("Dropped frames", status.get("dropped_frames", 0))
    st.caption(f"product {status.get('product', '?')} · heartbeat {status['updated_at']:%H:%M:%S} UTC "
               f"({age:.0f} s ago) · refreshes every {REFRESH_S:g} s")

    recent = store.query(station=station, limit=int(last_n))
    left, right = st.columns([3, 2])
    with left:
        st.subheader(f"Last {len(recent)} parts")
        st.dataframe([{"id": r.id, "time (UTC)": r.time.strftime("%H:%M:%S"), "verdict": r.verdict,
                       "score": None if r.score is None else round(r.score, 3), "lot": r.lot or "",
                       "file": Path(r.file).name if r.file else ""} for r in recent], hide_index=True)
    with right:
        st.subheader("Latest FAIL")
        fails = store.query(station=station, verdict="FAIL", limit=1)
        if not fails:
            st.caption("No FAIL yet.")
            return
        fail = fails[0]
        verdict_banner("FAIL", f"part {fail.id} at {fail.time:%H:%M:%S} · score {fail.score:.3f}")
        if fail.overlay_path and Path(fail.overlay_path).is_file():
            st.image(fail.overlay_path, caption="heatmap overlay", width="stretch")
        st.info(fail.explanation or "The explanation is being written…")
        if fail.regions:
            st.dataframe(region_rows(fail.regions), hide_index=True)


live_view()
with st.expander("Full station status"):
    for status in store.station_status(station):
        st.json({k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in status.items()}, expanded=False)
