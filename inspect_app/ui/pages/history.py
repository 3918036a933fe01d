"""History and feedback: stored results by product, verdict, time and lot; open one, give
feedback, export, and hand false rejects back to the product's good images for a refit."""

import csv
import io
import json
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import streamlit as st

from inspect_app.errors import InspectAppError
from inspect_app.ui import auth
from inspect_app.ui.kind_labelling import render_kind_labelling
from inspect_app.ui.learning_panel import learning_panel
from inspect_app.ui.uploads import copy_into
from inspect_app.ui.widgets import region_table, store_or_error, verdict_banner

FEEDBACK_LABELS = {"false_reject": "False reject (the part is good)",
                   "missed_defect": "Missed defect (the part is bad)",
                   "confirmed": "Confirmed (the verdict is right)"}
ALL = "(all)"

cfg = auth.page_start("History and feedback")
user = auth.require_user(cfg)
store = store_or_error(cfg)
if user is None or store is None:
    st.stop()


def to_csv(rows: list[dict]) -> bytes:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in row.items()})
    return buffer.getvalue().encode()


cols = st.columns([2, 2, 2, 2, 2])
product = cols[0].selectbox("Product", [ALL] + store.products(), key="history_product")
verdicts = cols[1].multiselect("Verdict", ["PASS", "FAIL", "ERROR"], key="history_verdicts")
since = cols[2].date_input("From (UTC day)", value=None, key="history_since")
until = cols[3].date_input("To (UTC day)", value=None, key="history_until")
lot = cols[4].text_input("Lot", key="history_lot").strip()
filters = {
    "product": None if product == ALL else product, "verdict": verdicts or None, "lot": lot or None,
    "since": datetime.combine(since, time.min, UTC) if since else None,
    "until": datetime.combine(until, time.min, UTC) + timedelta(days=1) if until else None,
}
total = store.count(**filters)
results = store.query(**filters, limit=500)
st.caption(f"{total} result(s) match; the newest {len(results)} are listed.")
if not results:
    st.info("No stored results match these filters.")
    st.stop()

rows = [{"id": r.id, "time (UTC)": r.time.strftime("%Y-%m-%d %H:%M:%S"), "station": r.station, "product": r.product,
         "lot": r.lot or "", "file": Path(r.file).name if r.file else "", "verdict": r.verdict,
         "score": None if r.score is None else round(r.score, 3),
         "feedback": ", ".join(f["kind"] for f in r.feedback), "explanation": r.explanation or ""}
        for r in results]
picked = st.dataframe(rows, hide_index=True, key="history_table", on_select="rerun", selection_mode="single-row")
st.caption("Click a row to open its result.")
export = st.columns(2)
export[0].download_button("Export these results (CSV)", to_csv([r.to_dict() for r in results]),
                          file_name="results.csv", mime="text/csv", key="history_export_results")
export[1].download_button("Export feedback (CSV)", to_csv(store.feedback(filters["product"])),
                          file_name="feedback.csv", mime="text/csv", key="history_export_feedback")

chosen = picked.selection.rows if picked is not None else []
rid = results[chosen[0]].id if chosen else results[0].id
result = store.get(rid)
st.header(f"Result {rid}" + ("" if chosen else " (the newest; click a row to open another)"))
verdict_banner(result.verdict, "" if result.score is None else f"calibrated score {result.score:.3f} · threshold 0.50")
if result.error:
    st.error(result.error)
pictures = [(p, c) for p, c in ((result.image_path, "image"), (result.overlay_path, "heatmap overlay")) if p]
first, second, facts = st.columns([2, 2, 3])
for col, (path, caption) in zip((first, second), pictures, strict=False):
    if Path(path).is_file():
        col.image(path, caption=caption, width="stretch")
    else:
        col.caption(f"{caption}: {path} is no longer on disk")
if not pictures:
    first.caption("No stored image: FAIL images and a sample of PASS images are kept (retention policy).")
with facts:
    if result.explanation:
        st.info(result.explanation)
        st.caption(f"explanation: {result.explanation_source}")
    st.caption(f"station {result.station} · lot {result.lot or '-'} · profile {result.profile_version} · "
               f"{result.time.isoformat()}")
    for entry in result.feedback:
        st.markdown(f"- **{FEEDBACK_LABELS.get(entry['kind'], entry['kind'])}** by {entry['user'] or '?'} "
                    f"({entry['time']:%Y-%m-%d %H:%M}): {entry['note']}")
    with st.form("history_feedback", clear_on_submit=True):
        kind = st.radio("Feedback", list(FEEDBACK_LABELS), format_func=FEEDBACK_LABELS.get, key="history_kind",
                        index=None)
        note = st.text_input("Note", key="history_note")
        if st.form_submit_button("Save feedback"):
            if kind is None:
                st.error("Choose what is wrong or right about this verdict first.")
            else:
                try:
                    store.add_feedback(rid, kind, note, user=user.name)
                    auth.audit(cfg, "feedback.add", {"result_id": rid, "kind": kind, "note": note})
                    st.session_state["history_done"] = f"Feedback saved for result {rid}: {FEEDBACK_LABELS[kind]}."
                    st.rerun()
                except InspectAppError as exc:
                    st.error(str(exc))
    if st.session_state.get("history_done"):
        st.success(st.session_state.pop("history_done"))
    render_kind_labelling(cfg, result)

if result.regions:
    region_table(result.regions)

if auth.is_engineer(cfg) and result.product and any(f["kind"] == "false_reject" for f in result.feedback):
    target = cfg.good_images_dir / result.product
    st.markdown(f"Marked as a false reject: its image can join the good images of **{result.product}** "
                f"({target}) for the next refit on the Products page.")
    if st.button("Add to the product's good images", key="history_add_good"):
        if auth.require_engineer(cfg, "add images to a product's good images"):
            try:
                if not result.image_path:
                    raise InspectAppError(f"result {rid} has no stored image to add")
                copied = copy_into(Path(result.image_path), target)
                auth.audit(cfg, "good_images.add",
                           {"result_id": rid, "product": result.product, "path": str(copied)})
                st.success(f"Copied to {copied}. Refit {result.product} on the Products page to use it.")
            except InspectAppError as exc:
                st.error(str(exc))

if auth.is_engineer(cfg):
    learning_panel(cfg, store)
