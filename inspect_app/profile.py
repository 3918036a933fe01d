"""Product profiles on disk: ``models/<product>/profile.json`` (settings, calibration, training
images) beside ``model.safetensors`` (the fitted model's state dict).

Writes go to a temporary sibling folder that is renamed into place, so a crash or Ctrl-C never
leaves a half-written profile; loading checks format and encoder before anything is used. A
profile of another format is refused with the command that refits it (``inspect-app refit``),
which reads the training images' paths the profile recorded. Importing this module does not
import torch (the line, API and UI list and check profiles without it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspect_app import PROFILE_FORMAT
from inspect_app.errors import ProfileError
from inspect_app.post_processing.calibration import Calibration

if TYPE_CHECKING:
    import torch

PRODUCT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PROFILE_FILE = "profile.json"
MODEL_FILE = "model.safetensors"


def models_dir(path: str | Path | None = None) -> Path:
    """``path``, else ``$INSPECT_APP_MODELS_DIR``, else ``./models``."""
    return Path(path or os.environ.get("INSPECT_APP_MODELS_DIR") or "models")


def check_product_name(name: str) -> str:
    if not PRODUCT_NAME.match(name or "") or name in ("adapters",):
        raise ProfileError(
            f"invalid product name {name!r}: use 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    return name


def save_profile(folder: Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Path:
    """Atomically write ``meta`` as profile.json and ``tensors`` as model.safetensors."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(tmp / MODEL_FILE))
        (tmp / PROFILE_FILE).write_text(json.dumps(meta, indent=2))
        for path in tmp.iterdir():
            path.chmod(0o644)  # readable by the station UI / line service running as another user
        old = None
        if folder.exists():
            old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def read_profile_meta(folder: Path) -> dict[str, Any]:
    """profile.json of any format (the refit reads old ones); ``ProfileError`` if missing or corrupt."""
    folder = Path(folder)
    meta_path = folder / PROFILE_FILE
    if not meta_path.is_file():
        raise ProfileError(f"no profile for product {folder.name!r} in {folder.parent} "
                           f"(fit one with: inspect-app fit FOLDER --product {folder.name})")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"profile {meta_path} is corrupt ({exc}); refit the product") from None
    if not isinstance(meta, dict):
        raise ProfileError(f"profile {meta_path} is corrupt (not a JSON object); refit the product")
    return meta


def load_profile(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read and sanity-check a profile folder; raise ``ProfileError`` with the fix on any problem."""
    from safetensors.torch import load_file

    folder = Path(folder)
    meta = read_profile_meta(folder)
    fmt = meta.get("format")
    if fmt != PROFILE_FORMAT:
        raise ProfileError(
            f"profile {folder.name!r} has format {fmt} (written by inspect_app {meta.get('package_version', '?')}); "
            f"this installation reads format {PROFILE_FORMAT}: refit it with: inspect-app refit {folder.name} "
            f"--models-dir {folder.parent}"
        )
    path = folder / MODEL_FILE
    if not path.is_file():
        raise ProfileError(f"profile {folder.name!r} is missing {MODEL_FILE}; refit the product")
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise ProfileError(f"profile file {path} is corrupt ({exc}); refit the product") from None
    return meta, tensors


@dataclass
class ProfileSummary:
    """What a profile list shows, read without loading the model (or torch)."""

    product: str
    mode: str
    created_at: str | None
    n_images: int | None
    calibration: Calibration  # of the fitted mode


def read_profile_summary(folder: Path) -> ProfileSummary:
    """A current-format profile's summary; ``ProfileError`` (with the fix) for any other."""
    folder = Path(folder)
    meta = read_profile_meta(folder)
    if meta.get("format") != PROFILE_FORMAT:
        raise ProfileError(f"profile {folder.name!r} has format {meta.get('format')}, this installation reads "
                           f"format {PROFILE_FORMAT}: refit it with: inspect-app refit {folder.name}")
    try:
        mode = meta["config"]["mode"]
        calibration = Calibration.from_dict(meta["post_processing"]["calibrations"][mode])
        return ProfileSummary(meta.get("product", folder.name), mode, meta.get("created_at"),
                              meta.get("training", {}).get("count"), calibration)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProfileError(f"profile {folder.name!r} is incomplete or corrupt ({exc}); refit the product") from None


def list_profiles(root: str | Path | None = None) -> list[str]:
    root = models_dir(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / PROFILE_FILE).is_file())


def delete_profile(product: str, root: str | Path | None = None) -> None:
    folder = models_dir(root) / check_product_name(product)
    if not (folder / PROFILE_FILE).is_file():
        raise ProfileError(f"no profile for product {product!r} in {models_dir(root)}")
    shutil.rmtree(folder)
