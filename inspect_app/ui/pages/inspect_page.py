"""Inspect: upload images or take a snapshot; a large PASS/FAIL at once, the explanation when ready."""

import streamlit as st

from inspect_app.errors import InspectAppError
from inspect_app.results import THRESHOLD
from inspect_app.ui import auth, resources
from inspect_app.ui.inspection import collect_explanation, inspect_uploads
from inspect_app.ui.uploads import Upload
from inspect_app.ui.widgets import region_table, store_or_error, verdict_banner
from inspect_app.visualize import overlay

BATCH_KEY = "inspect_batch"
LINE_GRAB_KEY = "inspect_line_grab"

cfg = auth.page_start("Inspect")
user = auth.require_user(cfg)
products = resources.products(cfg)
if user is None:
    st.stop()
if not products:
    st.info(f"No product profiles in {cfg.models_dir} yet: an engineer fits one on the Products page.")
    st.stop()

top = st.columns([2, 2, 1])
product = top[0].selectbox("Product", products, key="inspect_product")
lot = top[1].text_input("Lot (optional)", key="inspect_lot")
show_boxes = top[2].toggle("Region boxes", value=True, key="inspect_boxes")
try:
    inspector, inspector_lock = resources.inspector(cfg, product)
except InspectAppError as exc:
    st.error(f"Product {product!r} cannot be used: {exc}")
    st.stop()
settings = resources.product_settings(cfg, product)

files = st.file_uploader(f"Images of parts (up to {cfg.max_upload_mb:g} MB each)", accept_multiple_files=True,
                         key="inspect_files")
uploads = [Upload(f.name, f.getvalue()) for f in files or []]
snap_cols = st.columns(2)
if snap_cols[0].toggle("Webcam snapshot", key="inspect_use_webcam"):
    shot = st.camera_input("Snapshot", key="inspect_camera")
    if shot is not None:
        uploads.append(Upload("webcam snapshot", shot.getvalue()))
if cfg.line_camera:
    if snap_cols[1].button("Grab from line camera", key="inspect_grab"):
        from inspect_app.ui.camera import grab_snapshot

        try:
            st.session_state[LINE_GRAB_KEY] = grab_snapshot(cfg.line_camera)
        except InspectAppError as exc:
            st.error(str(exc))
    if st.session_state.get(LINE_GRAB_KEY) is not None:
        uploads.append(st.session_state[LINE_GRAB_KEY])

if not uploads:
    st.caption(f"Profile {product} · version {inspector.profile_version} · mode {inspector.mode}")
    st.stop()

store = store_or_error(cfg)
batch_key = (product, inspector.profile_version, lot, tuple(u.digest for u in uploads))
batch = st.session_state.get(BATCH_KEY)
if batch is None or batch["key"] != batch_key:
    language = settings.get("language", "en")
    explainer = None
    if settings.get("explanations", True):
        try:
            explainer = resources.explainer(cfg, language)
        except Exception as exc:  # a broken explainer install must not cost the verdict
            st.warning(f"Explanations are unavailable ({type(exc).__name__}: {exc}); verdicts are not affected.")
    with st.spinner(f"Inspecting {len(uploads)} image(s)…"):
        parts = inspect_uploads(inspector, uploads, cfg.max_upload_bytes, store=store, station=cfg.station,
                                lot=lot, explainer=explainer, lock=inspector_lock)
    batch = {"key": batch_key, "parts": parts}
    st.session_state[BATCH_KEY] = batch
    if store is not None:
        auth.audit(cfg, "inspect", {"product": product, "images": len(uploads),
                                    "stored_ids": [p.stored_id for p in parts if p.stored_id is not None]})


@st.fragment(run_every=0.5)
def explanation_slot(index: int) -> None:
    """Polls the explanation of one part without blocking its verdict."""
    part = st.session_state[BATCH_KEY]["parts"][index]
    if collect_explanation(part, store):
        st.rerun(scope="app")  # show it in place, and stop polling
    st.caption("Explanation is being written…")


parts = batch["parts"]
counts = {v: sum(p.result is not None and p.result.verdict == v for p in parts) for v in ("PASS", "FAIL", "ERROR")}
if len(parts) > 1:
    st.markdown(f"**{len(parts)} images:** PASS {counts['PASS']} · FAIL {counts['FAIL']} · ERROR {counts['ERROR']}")
for index, part in enumerate(parts):
    if index:
        st.divider()
    result = part.result
    if result.verdict == "ERROR":
        verdict_banner("ERROR", f"{part.label}: not inspected, see why below")
        st.error(result.error)
        stored = f"stored as result {part.stored_id}" if part.stored_id is not None else \
            f"not stored ({part.store_error or 'no store'})"
        st.caption(stored)
        continue
    verdict_banner(result.verdict, f"{part.label} · score {result.score:.3f} vs threshold {THRESHOLD:.2f}")
    picture, heat, facts = st.columns([2, 2, 3])
    picture.image(part.image, caption="image", width="stretch")
    heat.image(overlay(part.image, result, boxes=show_boxes), caption="heatmap overlay (red: above threshold)",
               width="stretch")
    with facts:
        metrics = st.columns(2) + st.columns(2)
        metrics[0].metric("Score", f"{result.score:.3f}", help="Calibrated: FAIL above 0.5")
        metrics[1].metric("Threshold", f"{THRESHOLD:.2f}")
        metrics[2].metric("Regions", len(result.regions))
        metrics[3].metric("Verdict in", f"{part.verdict_ms:.0f} ms", help="From receiving the image to the verdict")
        if part.explanation_pending:
            explanation_slot(index)
        elif result.explanation:
            st.info(result.explanation)
            st.caption(f"explanation: {result.explanation_source}, {part.explanation_seconds or 0:.2f} s")
        if result.regions:
            region_table([r.to_dict() for r in result.regions])
        timing = " · ".join(f"{k} {v:.0f} ms" for k, v in result.timings_ms.items())
        stored = f"stored as result {part.stored_id}" if part.stored_id is not None else \
            f"not stored ({part.store_error or 'no store'})"
        st.caption(f"{timing} · raw score {result.raw_score:.4g} · profile {result.profile_version} · {stored}")
