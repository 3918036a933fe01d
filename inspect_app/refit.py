"""Refitting saved products: after an upgrade that changes the profile format, a station refits
its products from the same good images with the same settings instead of being stranded.

Profiles record their training images (absolute path and SHA-256 since format 5; older ones the
file name and SHA-256). The images are taken, in this order, from a folder given by the user,
from the recorded paths, or from the UI's store of uploaded good images
(``<models dir>/_good_images/<product>``); files whose content changed since are reported.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from inspect_app.config import InspectorConfig
from inspect_app.data.images import list_images
from inspect_app.errors import NotEnoughImagesError, ProfileError
from inspect_app.inspector import Inspector
from inspect_app.post_processing.image_score import decode_mask
from inspect_app.profile import check_product_name, list_profiles, models_dir, read_profile_meta
from inspect_app.progress import ProgressCallback
from inspect_app.training import FitReport

UI_GOOD_IMAGES = "_good_images"  # the UI keeps uploaded good images here, beside the profiles


@dataclass
class RefitPlan:
    """What a refit will learn from, decided before any work starts."""

    product: str
    config: InspectorConfig
    images: list[Path]
    source: str  # where the images were found, in words
    changed: list[str] = field(default_factory=list)  # recorded files whose content differs now
    missing: list[str] = field(default_factory=list)  # recorded files that are gone
    ignore_mask: str | None = None  # the profile's ignore mask (base64 PNG), kept by the refit


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _config(meta: dict[str, Any], product: str) -> InspectorConfig:
    try:
        return InspectorConfig.model_validate(meta.get("config", {}))
    except ValidationError as exc:
        raise ProfileError(f"profile {product!r} has settings this version cannot read ({exc.error_count()} "
                           "problem(s)); fit it again with: inspect-app fit FOLDER --product "
                           f"{product}") from None


def plan_refit(product: str, root: str | Path | None = None, images: str | Path | None = None) -> RefitPlan:
    """Where a product's training images are and which settings (and ignore mask) to refit it with."""
    meta = read_profile_meta(models_dir(root) / check_product_name(product))
    plan = _find_images(product, meta, root, images)
    plan.ignore_mask = meta.get("post_processing", {}).get("ignore_mask")
    return plan


def _find_images(product: str, meta: dict[str, Any], root: str | Path | None,
                 images: str | Path | None) -> RefitPlan:
    config = _config(meta, product)
    recorded = meta.get("training", {}).get("images", [])
    if images is not None:
        files = list_images(images)[0]
        by_name = {r.get("name"): r.get("sha256") for r in recorded}
        changed = [p.name for p in files if p.name in by_name and by_name[p.name] != _sha256(p)]
        return RefitPlan(product, config, files, f"folder {images}", changed=changed)
    with_paths = [r for r in recorded if r.get("path")]
    if with_paths:
        present = [r for r in with_paths if Path(r["path"]).is_file()]
        if present:
            files = [Path(r["path"]) for r in present]
            changed = [r["name"] for r in present if _sha256(Path(r["path"])) != r.get("sha256")]
            missing = [r["path"] for r in with_paths if not Path(r["path"]).is_file()]
            return RefitPlan(product, config, files, "the recorded training images", changed, missing)
    uploads = models_dir(root) / UI_GOOD_IMAGES / product
    if uploads.is_dir():
        return RefitPlan(product, config, list_images(uploads)[0], f"the UI's good images in {uploads}")
    raise NotEnoughImagesError(
        f"profile {product!r} does not say where its training images are (or they are gone): refit it with "
        f"inspect-app refit {product} --images FOLDER")


def refit(plan: RefitPlan, root: str | Path | None = None,
          progress: ProgressCallback | None = None) -> tuple[FitReport, Path]:
    """Fit ``plan`` (k-shot draw and seed as recorded) and save it over the old profile."""
    inspector = Inspector(plan.config, product=plan.product)
    mask = None if plan.ignore_mask is None else decode_mask(plan.ignore_mask)
    report = inspector.fit(plan.images, progress=progress, ignore_mask=mask)
    return report, inspector.save(root)


def refit_all_plans(root: str | Path | None = None) -> list[RefitPlan | ProfileError | NotEnoughImagesError]:
    """A plan, or the reason there is none, for every profile in the models folder."""
    plans: list[RefitPlan | ProfileError | NotEnoughImagesError] = []
    for product in list_profiles(root):
        try:
            plans.append(plan_refit(product, root))
        except (ProfileError, NotEnoughImagesError) as exc:
            plans.append(exc)
    return plans
