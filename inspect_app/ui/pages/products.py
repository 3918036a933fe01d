"""Products (engineers): the onboarding wizard (good images -> fit in the background -> calibration
-> save), and the list of profiles with delete. A fit runs on the process's job board, so leaving
the page or reloading never loses it: the page shows the running fit and its product."""


import streamlit as st

from inspect_app.config import CalibrationConfig, InspectorConfig, Mode
from inspect_app.data.images import list_images
from inspect_app.errors import InspectAppError, ProfileError
from inspect_app.profile import check_product_name, delete_profile, read_profile_summary
from inspect_app.progress import ProgressCallback
from inspect_app.ui import auth, resources
from inspect_app.ui.inspection import inspect_uploads
from inspect_app.ui.jobs import BackgroundJob
from inspect_app.ui.uploads import Upload, save_images
from inspect_app.ui.widgets import RAW_SCORE_NOTE, calibration_histogram, job_progress, verdict_banner

FIT_PREFIX = "fit:"
FIT_MODES: dict[Mode, str] = {"image-image": "image-image (default)", "fused": "fused (slower fit)",
                              "image-text": "image-text"}
MODE_HELP = ("image-image: a memory of good patches, the default and the fastest fit; it learns from approved false "
             "rejects without a refit. fused: image-image and image-text together, names defect kinds from "
             "synthesised ones. image-text: a text-space decoder that names defect kinds.")

cfg = auth.page_start("Products")
if auth.require_engineer(cfg, "fit and manage products") is None:
    st.stop()
board = resources.jobs()
fits = board.items(FIT_PREFIX)
job: BackgroundJob | None = fits[0][1] if fits else None  # the newest fit, whoever started it: it outlives visits
if job is not None and job.running:
    job_progress(job, f"Fitting {job.name} ({job.kind.removeprefix('fit:')}, {job.size:.0f} good images, "
                      f"started by {job.owner or '?'})")
if st.session_state.get("products_saved"):
    st.success(st.session_state.pop("products_saved"))


def profile_rows() -> list[dict[str, object]]:
    rows = []
    for name in resources.products(cfg):
        row: dict[str, object] = {"product": name}
        try:
            summary = read_profile_summary(cfg.models_dir / name)
            cal = summary.calibration
            row.update({"fitted (UTC)": summary.created_at, "mode": summary.mode, "good images": summary.n_images,
                        "threshold (raw score)": round(cal.raw_threshold, 4),
                        "target FRR": cal.target_frr, "expected FRR": round(cal.expected_frr, 4),
                        "status": "ok"})
        except (OSError, ProfileError) as exc:
            row["status"] = f"unusable profile ({exc})"
        rows.append(row)
    return rows


# ---------------------------------------------------------------- the profiles
st.header("Profiles")
rows = profile_rows()
if rows:
    st.dataframe(rows, hide_index=True)
    names = [str(r["product"]) for r in rows]
    usable = [name for name, r in zip(names, rows, strict=True) if r["status"] == "ok"]
    with st.expander("Calibration of a profile"):
        shown = st.selectbox("Profile", usable, index=None, placeholder="Choose a profile", key="products_show_name")
        if shown:
            saved = read_profile_summary(cfg.models_dir / shown).calibration
            st.image(calibration_histogram(saved.normal_scores, saved.raw_threshold, f"{shown}: held-out good parts"),
                     caption=f"{RAW_SCORE_NOTE} {saved.n_normal} held-out good raw scores "
                             f"({saved.holdout_method}); threshold "
                             f"{saved.raw_threshold:.4g} ({saved.method}); expected false-reject rate "
                             f"{saved.expected_frr:.2%}")
    with st.expander("Delete a profile"):
        victim = st.selectbox("Profile", names, key="products_delete_name")
        sure = st.checkbox(f"Yes, delete {victim} (its good-images folder is kept)", key="products_delete_sure")
        if st.button("Delete profile", key="products_delete", disabled=not sure):
            if auth.require_engineer(cfg, "delete a profile"):
                try:
                    delete_profile(victim, cfg.models_dir)
                    auth.audit(cfg, "product.delete", {"product": victim})
                    st.success(f"Deleted profile {victim}.")
                    st.rerun()
                except InspectAppError as exc:
                    st.error(str(exc))
else:
    st.info(f"No product profiles in {cfg.models_dir} yet: create one below.")

# ---------------------------------------------------------------- the wizard
st.header("New product or refit")
st.markdown("**1. Name the product** (a refit of an existing name replaces its profile when saved)")
cols = st.columns(3)
name = cols[0].text_input("Product name", key="products_name").strip()
mode = cols[1].selectbox("Mode", list(FIT_MODES), format_func=lambda m: FIT_MODES[m], key="products_mode",
                         help=MODE_HELP)
target_frr = cols[2].number_input("Target false-reject rate", min_value=0.001, max_value=0.2, value=0.01,
                                  step=0.005, format="%.3f", key="products_target_frr")

st.markdown("**2. Good images** (good parts only; 20 or more give a reliable threshold)")
source = st.radio("Source", ["Upload images or a zip", "A folder on this PC"], horizontal=True,
                  key="products_source")
good_folder = cfg.good_images_dir / name if name else None
if source == "Upload images or a zip":
    files = st.file_uploader("Good images or a .zip of them", accept_multiple_files=True, key="products_files")
    if good_folder is not None:
        kept = len(list_images(good_folder, min_count=0)[0]) if good_folder.is_dir() else 0
        st.caption(f"Uploads are kept in {good_folder} ({kept} image(s) there now, including false rejects "
                   "added from History); the fit uses every image in that folder.")
else:
    files = []
    folder_text = st.text_input("Folder of good images", key="products_folder")

mask_file = st.file_uploader("Ignore mask (optional): a PNG the size of the images, white where nothing counts "
                             "(labels, date prints, fixtures)", type=["png"], key="products_ignore_mask")

st.markdown("**3. Fit**")
busy = job is not None and job.running
if st.button("Fit", key="products_fit", type="primary", disabled=busy):
    user = auth.require_engineer(cfg, "fit a product")
    if user:
        try:
            check_product_name(name)
            if mode is None:
                raise InspectAppError("choose a mode")
            if source == "Upload images or a zip":
                folder = cfg.good_images_dir / name
                uploads = [Upload(f.name, f.getvalue()) for f in files]
                written, refused = save_images(uploads, folder, cfg.max_upload_bytes,
                                               int(cfg.max_zip_mb * 1024 * 1024))
                for reason in refused:
                    st.warning(f"Not used: {reason}")
                images = list_images(folder, min_count=0)[0] if folder.is_dir() else []
            else:
                images = list_images(folder_text.strip(), min_count=0)[0] if folder_text.strip() else []
            if not images:
                raise InspectAppError(f"product {name!r} has no good images: upload some or choose a folder "
                                      "that holds them")
            config = InspectorConfig(mode=mode, calibration=CalibrationConfig(target_frr=target_frr))

            mask = mask_file.getvalue() if mask_file is not None else None

            def fit(progress: ProgressCallback, images=images, name=name, config=config, mask=mask):
                from inspect_app.inspector import Inspector

                inspector = Inspector(config, product=name)
                return inspector, inspector.fit(images, progress=progress, ignore_mask=mask)

            job = board.start(FIT_PREFIX + name, name, fit, kind=f"fit:{mode}", size=len(images),
                              costs=resources.stage_costs(cfg), owner=user.name)
            auth.audit(cfg, "product.fit", {"product": name, "images": len(images), "mode": mode,
                                            "target_frr": target_frr, "ignore_mask": mask is not None})
            job_progress(job, f"Fitting {name}")  # from the next visit on, at the top of the page
        except InspectAppError as exc:
            st.error(str(exc))


finished = job if job is not None and not job.running else None  # a running fit's bar is drawn above
if finished is not None and finished.error:
    st.error(f"Fitting {finished.name} failed: {finished.error}")
    if st.button("Dismiss", key="products_dismiss"):
        board.pop(FIT_PREFIX + finished.name)
        st.rerun()
elif finished is not None:
    inspector, report = finished.result
    cal = report.calibration
    st.success(f"Fitted {report.product} on {report.n_images} good images in {report.seconds:.1f} s.")
    for reason in report.skipped:
        st.warning(f"Skipped: {reason}")
    if report.n_images < 10:
        st.warning(f"Only {report.n_images} good image(s): the threshold is rough; 20 or more give a reliable one.")
    if report.exposure_standardised:
        st.info("The good images are grayscale: each image's brightness and contrast are evened out before "
                "inspection, so exposure changes between parts do not count as defects.")
    st.markdown("**4. Calibration**")
    metric_cols = st.columns(4)
    metric_cols[0].metric("Good scores calibrating", cal.n_normal, help=cal.holdout_method)
    metric_cols[1].metric("Raw threshold", f"{cal.raw_threshold:.4g}")
    metric_cols[2].metric("Expected false-reject rate", f"{cal.expected_frr:.2%}")
    metric_cols[3].metric("Target", f"{cal.target_frr:.2%}")
    st.image(calibration_histogram(cal.normal_scores, cal.raw_threshold, f"{report.product}: held-out good parts"),
             caption=f"Raw scores of held-out good images and the raw threshold (dashed). {RAW_SCORE_NOTE}")

    st.markdown("**5. Optionally try a few defective samples** (not saved, not used for the threshold)")
    samples = st.file_uploader("Defective samples", accept_multiple_files=True, key="products_samples")
    if samples:
        uploads = [Upload(f.name, f.getvalue()) for f in samples]
        key = (id(inspector), tuple(u.digest for u in uploads))
        if st.session_state.get("products_tried", (None,))[0] != key:
            st.session_state["products_tried"] = (key, inspect_uploads(inspector, uploads, cfg.max_upload_bytes))
        for part in st.session_state["products_tried"][1]:
            if part.error:
                st.error(part.error)
            else:
                verdict_banner(part.result.verdict, f"{part.label}: calibrated score {part.result.score:.3f}")

    st.markdown("**6. Save**")
    save_cols = st.columns(2)
    if save_cols[0].button("Save profile", key="products_save", type="primary"):
        if auth.require_engineer(cfg, "save a profile"):
            try:
                path = inspector.save(cfg.models_dir)
                auth.audit(cfg, "product.save", {"product": report.product, "path": str(path),
                                                 "profile_version": inspector.profile_version,
                                                 "raw_threshold": cal.raw_threshold})
                board.pop(FIT_PREFIX + report.product)
                st.session_state["products_saved"] = f"Saved profile {report.product} to {path}."
                st.rerun()
            except InspectAppError as exc:
                st.error(str(exc))
    if save_cols[1].button("Discard", key="products_discard"):
        board.pop(FIT_PREFIX + report.product)
        st.rerun()
