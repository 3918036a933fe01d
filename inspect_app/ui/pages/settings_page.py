"""Settings (engineers): per-product sensitivity with its consequence on held-out good parts
shown before saving, explanations on/off and language, result sinks, and the audit log."""

import json
from zoneinfo import available_timezones

import numpy as np
import streamlit as st
import yaml

from inspect_app.errors import InspectAppError
from inspect_app.ui import auth, resources
from inspect_app.ui.runboard import DEFAULT_SHIFT_STARTS, PLANT_SETTINGS_KEY, PlantShifts
from inspect_app.ui.widgets import RAW_SCORE_NOTE, calibration_histogram, store_or_error

FRR_STEPS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2]
SINK_EXAMPLE = """# one or more of:
# mqtt: {host: 127.0.0.1, port: 1883, topic_prefix: inspect}
# webhook: {url: "http://plc-gateway.local/results", verdicts: [FAIL]}
# csv: {path: data/line/results.csv}
"""

cfg = auth.page_start("Settings")
engineer = auth.require_engineer(cfg, "change thresholds and settings")
store = store_or_error(cfg)
if engineer is None or store is None:
    st.stop()
products = resources.products(cfg)
if not products:
    st.info("No product profiles yet: fit one on the Products page.")
    st.stop()
product = st.selectbox("Product", products, key="settings_product")
sensitivity, explanations, sinks, plant_tab, audit_tab = st.tabs(["Sensitivity", "Explanations", "Sinks",
                                                                   "Plant shifts", "Audit log"])


def parse_sinks(text: str) -> dict:
    """The sinks mapping, validated with the line runner's own settings models."""
    from pydantic import BaseModel, ValidationError

    from inspect_app.product_settings import CsvConfig, MqttConfig, WebhookConfig

    models: dict[str, type[BaseModel]] = {"mqtt": MqttConfig, "webhook": WebhookConfig, "csv": CsvConfig}
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise InspectAppError(f"sinks are not valid YAML: {exc}") from None
    if not isinstance(data, dict) or set(data) - set(models):
        raise InspectAppError(f"sinks must be a mapping with keys among {', '.join(models)}")
    try:
        return {k: models[k].model_validate(v).model_dump(mode="json") for k, v in data.items() if v is not None}
    except ValidationError as exc:
        raise InspectAppError(f"sinks: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None


with sensitivity:
    try:
        cal = resources.inspector(cfg, product).inspector.calibration
    except InspectAppError as exc:
        st.error(f"Product {product!r} cannot be used: {exc}")
        cal = None
    if cal is not None and len(cal.normal_scores) < 2:
        st.error(f"Profile {product!r} keeps too few held-out good scores to re-threshold it; refit it.")
    elif cal is not None:
        steps = sorted(set(FRR_STEPS) | {cal.target_frr})
        target = st.select_slider("Target false-reject rate of good parts (left: fewer good parts rejected, "
                                  "right: more subtle defects caught)", steps, value=cal.target_frr,
                                  format_func=lambda v: f"{v:.2%}", key="settings_target_frr")
        proposed = cal.with_sensitivity(target)
        scores = np.asarray(cal.normal_scores)
        stored = [r for r in store.query(product=product, limit=5000) if r.raw_score is not None]
        missed = [r for r in stored if any(f["kind"] == "missed_defect" for f in r.feedback)]
        good = [r for r in stored if any(f["kind"] == "false_reject" for f in r.feedback)]

        def consequences(label: str, target_frr: float, threshold: float, expected: float) -> dict[str, str]:
            rejected = int((scores > threshold).sum())
            return {"": label, "target FRR": f"{target_frr:.2%}", "raw threshold": f"{threshold:.4g}",
                    "expected FRR (model)": f"{expected:.2%}",
                    "held-out good parts rejected": f"{rejected} of {scores.size} ({rejected / scores.size:.1%})",
                    "stored parts rejected": f"{sum(r.raw_score > threshold for r in stored)} of {len(stored)}",
                    "marked missed defects caught": f"{sum(r.raw_score > threshold for r in missed)} of {len(missed)}",
                    "marked good parts rejected": f"{sum(r.raw_score > threshold for r in good)} of {len(good)}"}

        table = [consequences("now", cal.target_frr, cal.raw_threshold, cal.expected_frr),
                 consequences("proposed", target, proposed.raw_threshold, proposed.expected_frr)]
        st.dataframe(table, hide_index=True)
        st.caption("Expected FRR is the model's estimate for all future good parts; the held-out count is what the "
                   "threshold does to the few good parts kept aside at the fit, so the two differ on small samples. "
                   "Stored parts are this product's inspected parts in the results store (raw scores); "
                   "a lower threshold rejects more of them and catches more of the parts marked as missed defects.")
        if cal.method == "f1-optimal":
            st.caption("The current threshold is f1-optimal (fitted with defective samples); saving replaces "
                       "it with the good-image threshold for the chosen target.")
        st.image(calibration_histogram(cal.normal_scores, proposed.raw_threshold,
                                       f"{product}: proposed threshold on held-out good parts"),
                 caption=f"Held-out good raw scores and the proposed raw threshold (dashed). {RAW_SCORE_NOTE}")
        if st.button("Save threshold", key="settings_save_threshold", type="primary",
                     disabled=target == cal.target_frr and cal.method == proposed.method):
            try:
                from inspect_app.inspector import Inspector

                fresh = Inspector.load(product, cfg.models_dir)  # the cached one serves other sessions
                saved = fresh.set_target_frr(target)
                fresh.save(cfg.models_dir)
                auth.audit(cfg, "threshold.change", {
                    "product": product, "profile_version": fresh.profile_version,
                    "before": {"target_frr": cal.target_frr, "raw_threshold": cal.raw_threshold},
                    "after": {"target_frr": saved.target_frr, "raw_threshold": saved.raw_threshold}})
                st.session_state["settings_done"] = (
                    f"Saved: {product} now rejects above raw score {saved.raw_threshold:.4g} "
                    f"(expected FRR {saved.expected_frr:.2%}).")
                st.rerun()
            except InspectAppError as exc:
                st.error(str(exc))
    if st.session_state.get("settings_done"):
        st.success(st.session_state.pop("settings_done"))

current = resources.product_settings(cfg, product)
with explanations:
    enabled = st.toggle("Explain results", value=bool(current.get("explanations", True)), key="settings_explain")
    languages = list(resources.LANGUAGES)
    saved_language = current.get("language", "en")
    language = st.selectbox("Language", languages, format_func=lambda code: resources.LANGUAGES[code],
                            index=languages.index(saved_language) if saved_language in languages else 0,
                            key="settings_language") or "en"
    st.caption("Language-model sentences are checked against the measured facts before they are shown; "
               "a sentence that cannot be checked is replaced by the English deterministic sentence.")
    if st.button("Save explanation settings", key="settings_save_explain"):
        store.set_settings(product, {**store.get_settings(product), "explanations": enabled, "language": language},
                           engineer.name)
        st.success(f"Saved: explanations {'on' if enabled else 'off'}, language {resources.LANGUAGES[language]}.")

with sinks:
    saved_sinks = current.get("sinks") or {}
    text = st.text_area("Result sinks (YAML, the line runner's mqtt / webhook / csv settings)",
                        value=yaml.safe_dump(saved_sinks, sort_keys=False) if saved_sinks else SINK_EXAMPLE,
                        height=180, key="settings_sinks")
    if st.button("Save sinks", key="settings_save_sinks"):
        try:
            parsed = parse_sinks(text)
            store.set_settings(product, {**store.get_settings(product), "sinks": parsed}, engineer.name)
            st.success(f"Saved sinks for {product}: {', '.join(parsed) or 'none'}.")
        except InspectAppError as exc:
            st.error(str(exc))

with plant_tab:
    saved_plant = store.get_settings(PLANT_SETTINGS_KEY)
    zones = sorted(available_timezones())
    saved_zone = saved_plant.get("timezone", "UTC")
    zone = st.selectbox("Plant time zone", zones, index=zones.index(saved_zone) if saved_zone in zones else 0,
                        key="settings_timezone")
    starts_text = st.text_input("Shift starts (local times, comma-separated)",
                                value=", ".join(saved_plant.get("shift_starts") or DEFAULT_SHIFT_STARTS),
                                key="settings_shift_starts")
    st.caption("The run screen counts PASS / FAIL / ERROR and yield from the start of the current shift.")
    if st.button("Save plant shifts", key="settings_save_plant"):
        try:
            shifts = PlantShifts(zone, tuple(t.strip() for t in starts_text.split(",") if t.strip()))
            shifts.validate()
            store.set_settings(PLANT_SETTINGS_KEY, {"timezone": shifts.timezone, "shift_starts": list(shifts.starts)},
                               engineer.name)
            st.success(f"Saved: shifts start at {', '.join(shifts.starts)} ({shifts.timezone}).")
        except InspectAppError as exc:
            st.error(str(exc))

with audit_tab:
    st.dataframe([{"time (UTC)": a["time"].strftime("%Y-%m-%d %H:%M:%S"), "user": a["user"], "action": a["action"],
                   "detail": json.dumps(a["detail"]) if isinstance(a["detail"], dict) else a["detail"]}
                  for a in store.audit_log(200)], hide_index=True, key="settings_audit")
