"""Teach a product a defect kind from a stored result (History page): choose or type the kind, take
the region from the map, a box or a mask, and the profile learns it at once (no refit; audited)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import streamlit as st

from inspect_app.errors import InspectAppError
from inspect_app.post_processing.kinds import confidence_words
from inspect_app.ui import auth, resources
from inspect_app.ui.config import UIConfig

FROM_MAP, FROM_BOX, FROM_MASK = "the region the map found", "a box", "a mask image"
NEW_KIND = "(type a new kind)"


def named_kinds_text(regions: list[dict[str, Any]]) -> str:
    """The regions' kinds as operators read them: the kind with its confidence in words, or a
    neutral word when no kind cleared the naming bar."""
    words = []
    for i, region in enumerate(regions, 1):
        kind, confidence = region.get("defect_type"), region.get("defect_probability")
        named = f"{confidence_words(confidence)} {kind}" if kind and confidence is not None else "a defect"
        words.append(f"region {i}: {named}")
    return "; ".join(words)


def _box_input(size: tuple[int, int], suggested: tuple[int, int, int, int] | None) -> tuple[int, int, int, int]:
    width, height = size
    x0, y0, x1, y1 = suggested or (0, 0, width, height)
    cols = st.columns(4)
    return (int(cols[0].number_input("left", 0, width - 1, x0, key="kind_x0")),
            int(cols[1].number_input("top", 0, height - 1, y0, key="kind_y0")),
            int(cols[2].number_input("right", 1, width, max(x1, 1), key="kind_x1")),
            int(cols[3].number_input("bottom", 1, height, max(y1, 1), key="kind_y1")))


def render_kind_labelling(cfg: UIConfig, result: Any) -> None:
    """The "teach this kind" panel for one stored result (``store.records`` row)."""
    if not result.product or not result.image_path or not Path(result.image_path).is_file():
        return
    from inspect_app.inspector import Inspector
    from inspect_app.kinds.learning import LabelledPart, add_kind, require_kinds

    with st.expander("Teach a defect kind from this part"):
        if result.regions:
            st.caption(named_kinds_text(result.regions))
        try:
            book = require_kinds(resources.torch_inspector(cfg, result.product))
        except InspectAppError as exc:
            st.info(str(exc))
            return
        st.caption(f"A kind is named when its confidence clears a bar from {book.bar.basis}.")
        choice = st.selectbox("Kind", book.names + [NEW_KIND], key="kind_choice")
        kind = st.text_input("New kind (the factory's own word)", key="kind_new").strip() \
            if choice == NEW_KIND else choice
        image = cv2.imread(result.image_path, cv2.IMREAD_UNCHANGED)
        if image is None:
            st.error(f"{result.image_path} is not a readable image")
            return
        size = (image.shape[1], image.shape[0])
        source = st.radio("Where the defect is", [FROM_MAP, FROM_BOX, FROM_MASK], key="kind_source", horizontal=True)
        box = mask = None
        suggested = tuple(result.regions[0]["bbox"]) if result.regions else None
        if source == FROM_BOX:
            box = _box_input(size, suggested)
        elif source == FROM_MASK:
            upload = st.file_uploader("Mask (white on the defect)", type=["png", "bmp", "jpg"], key="kind_mask")
            if upload is not None:
                decoded = cv2.imdecode(np.frombuffer(upload.getvalue(), np.uint8), cv2.IMREAD_GRAYSCALE)
                mask = None if decoded is None else cv2.resize(decoded, size, interpolation=cv2.INTER_NEAREST)
        if st.button("Teach this kind", key="kind_teach") and auth.require_engineer(cfg, "teach a defect kind"):
            if not kind or (source == FROM_MASK and mask is None):
                st.error("Name the kind, and give a readable mask when the region comes from one.")
                return
            try:  # a fresh copy is taught and saved; the shared one reloads from the new profile version
                inspector = Inspector.load(result.product, cfg.models_dir)
                part = LabelledPart(result.image_path, Path(result.image_path).name, mask, box)
                updated = add_kind(inspector, kind, [part])
                inspector.save(cfg.models_dir)
            except InspectAppError as exc:
                st.error(str(exc))
                return
            auth.audit(cfg, "kinds.add", {"result_id": result.id, "product": result.product, "kind": kind,
                                          "region": source, "profile_version": inspector.profile_version})
            found = updated.find(kind)
            st.success(f"{result.product} learnt {kind!r} ({found.n_examples if found else 1} labelled part(s)); "
                       "no refit needed.")
