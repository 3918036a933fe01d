"""The engineer's review of false rejects on the History page: preview what learning them would stop
catching, approve (audit-logged, a new profile version), or undo the last approval."""

from __future__ import annotations

import streamlit as st

from inspect_app.errors import InspectAppError
from inspect_app.ui import auth, resources
from inspect_app.ui.config import UIConfig
from inspect_app.ui.learning import (
    Candidate,
    approve,
    build_candidate,
    earlier_versions,
    learned_ids,
    pending_false_rejects,
    restore,
)

CANDIDATE_KEY = "learning_candidate"


def learning_panel(cfg: UIConfig, store) -> None:
    st.header("Learn from false rejects")
    products = resources.products(cfg)
    if not products:
        return
    product = st.selectbox("Product", products, key="learning_product")
    try:
        inspector = resources.torch_inspector(cfg, product)
    except InspectAppError as exc:
        st.error(f"Product {product!r} cannot be used: {exc}")
        return
    pending = pending_false_rejects(store, product, learned_ids(inspector))
    if done := st.session_state.pop("learning_done", None):
        st.success(done)
    if not pending:
        st.caption(f"No false rejects of {product} wait for review (profile {inspector.profile_version}).")
    else:
        labels = {r.id: f"result {r.id} · {r.file or '-'} · score {r.score or 0:.3f}" for r in pending}
        chosen = st.multiselect("Parts marked good by operators", list(labels), default=list(labels),
                                format_func=lambda i: labels[i], key="learning_parts")
        if st.button("Preview: what would it stop catching?", key="learning_preview", disabled=not chosen):
            with st.spinner("Learning into a copy of the memory and re-scoring the stored FAILs…"):
                try:
                    st.session_state[CANDIDATE_KEY] = build_candidate(
                        cfg.models_dir, product, [r for r in pending if r.id in chosen], store)
                except InspectAppError as exc:
                    st.error(str(exc))
    candidate: Candidate | None = st.session_state.get(CANDIDATE_KEY)
    if candidate is not None and candidate.product == product:
        lost = candidate.stops_catching
        st.markdown(f"Learning {len(candidate.learnt)} part(s) moves the raw threshold from "
                    f"{candidate.threshold_before:.4g} to {candidate.threshold_after:.4g} "
                    f"(learnt in {candidate.learn_s:.1f} s). Of {len(candidate.rescored)} stored FAILs re-scored "
                    f"(in {candidate.rescore_s:.1f} s), "
                    f"it would **stop catching {len(lost)}**.")
        st.dataframe([{"result": r.result_id, "file": r.file or "-", "score now": round(r.score_before, 3),
                       "score after learning": round(r.score_after, 3),
                       "verdict after": "FAIL" if r.still_caught else "PASS (no longer caught)"}
                      for r in sorted(candidate.rescored, key=lambda r: r.still_caught)],
                     hide_index=True, key="learning_rescored")
        cols = st.columns(2)
        if cols[0].button("Approve and save", key="learning_approve", type="primary"):
            if auth.require_engineer(cfg, "approve learning"):
                version = approve(candidate, cfg.models_dir)
                auth.audit(cfg, "memory.learn", {
                    "product": product, "result_ids": candidate.learnt, "version_before": candidate.version_before,
                    "version_after": version, "raw_threshold_before": candidate.threshold_before,
                    "raw_threshold_after": candidate.threshold_after,
                    "stops_catching": [r.result_id for r in lost]})
                del st.session_state[CANDIDATE_KEY]
                st.session_state["learning_done"] = (f"Learnt {len(candidate.learnt)} part(s): {product} is now "
                                                     f"profile {version}; running line stations switch to it within "
                                                     "seconds.")
                st.rerun()
        if cols[1].button("Discard", key="learning_discard"):
            del st.session_state[CANDIDATE_KEY]
            st.rerun()
    kept = earlier_versions(cfg.models_dir, product)
    if kept and st.button(f"Undo: go back to profile {kept[0].name}", key="learning_undo"):
        if auth.require_engineer(cfg, "undo learning"):
            restore(cfg.models_dir, product, kept[0])
            auth.audit(cfg, "memory.undo", {"product": product, "restored": kept[0].name,
                                            "replaced": inspector.profile_version})
            st.session_state["learning_done"] = f"{product} is back at profile {kept[0].name}."
            st.rerun()
