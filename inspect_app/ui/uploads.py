"""Uploaded files as checked images: size limit, image decoding, and safe zip extraction.

Pages hand these functions the bytes Streamlit received (file uploader, camera snapshot), so the
same checks run in the browser, in ``AppTest`` and in the tests that call them directly.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspect_app.data.images import IMAGE_EXTENSIONS, MAX_PIXELS, load_image
from inspect_app.errors import ImageLoadError, InspectAppError

MAX_ZIP_MEMBERS = 20_000
MAX_COMPRESSION_RATIO = 200  # image files barely compress; a higher ratio is a zip bomb
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class Upload:
    """One received file: its name and bytes (what a page gets from Streamlit)."""

    name: str
    data: bytes

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()[:16]


@dataclass
class CheckedImage:
    """An upload that decoded to an RGB image, or the reason it was refused."""

    upload: Upload
    image: np.ndarray | None
    error: str | None = None


def human_size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def check_image(upload: Upload, max_bytes: int) -> CheckedImage:
    """Decode an upload, refusing oversized and non-image files with a message an operator reads."""
    if len(upload.data) > max_bytes:
        return CheckedImage(upload, None, f"{upload.name}: {human_size(len(upload.data))} is over the upload "
                                          f"limit of {human_size(max_bytes)}")
    try:
        return CheckedImage(upload, load_image(upload.data, name=upload.name))
    except ImageLoadError as exc:
        if "decompression-bomb" in str(exc):  # the loader's guard against huge images, in an operator's words
            return CheckedImage(upload, None, f"{upload.name}: the image has more than {MAX_PIXELS / 1e6:.0f} million "
                                              "pixels, more than the station accepts. Resize it (for example to "
                                              "4000 pixels on its long side) and try again.")
        return CheckedImage(upload, None, str(exc))


def safe_file_name(name: str) -> str:
    """A flat, harmless file name from an uploaded or zipped name (no folders, no '..')."""
    stem = _SAFE_NAME.sub("_", Path(name.replace("\\", "/")).name).strip("._")
    return stem or "image"


def _unique(folder: Path, name: str) -> Path:
    path = folder / name
    stem, suffix, i = path.stem, path.suffix, 1
    while path.exists():
        path = folder / f"{stem}_{i}{suffix}"
        i += 1
    return path


def save_images(uploads: list[Upload], folder: Path, max_bytes: int,
                max_zip_bytes: int) -> tuple[list[Path], list[str]]:
    """Write uploaded images (and the images inside uploaded zips) into ``folder``.

    Returns the written paths and one message per refused file; nothing is written for a
    refused file, and a bad zip is refused as a whole.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written, refused = [], []
    for upload in uploads:
        if upload.name.lower().endswith(".zip"):
            try:
                members = read_zip_images(upload.data, max_bytes, max_zip_bytes)
            except InspectAppError as exc:
                refused.append(str(exc))
                continue
        else:
            members = [upload]
        for member in members:
            checked = check_image(member, max_bytes)
            if checked.error:
                refused.append(checked.error)
                continue
            name = safe_file_name(member.name)
            if Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                name += ".png"
            path = _unique(folder, name)
            path.write_bytes(member.data)
            written.append(path)
    return written, refused


def read_zip_images(data: bytes, max_member_bytes: int, max_total_bytes: int) -> list[Upload]:
    """The image files of a zip archive, read with guards against zip bombs and odd paths.

    Folders inside the archive are flattened (names keep only their last part, so ``../`` or
    absolute paths cannot escape), non-image members are ignored, and the archive is refused
    when a member is over the size limit, the total uncompressed size is over ``max_total_bytes``,
    a member compresses suspiciously well, or there are too many members. Sizes are counted
    while reading, not taken from the archive's own (forgeable) headers.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise InspectAppError(f"not a readable zip archive ({exc})") from None
    with archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        if len(infos) > MAX_ZIP_MEMBERS:
            raise InspectAppError(f"zip archive has {len(infos)} files; at most {MAX_ZIP_MEMBERS} are accepted")
        out, total = [], 0
        for info in infos:
            name = info.filename
            if Path(name).suffix.lower() not in IMAGE_EXTENSIONS or Path(name).name.startswith("."):
                continue
            if info.file_size > max_member_bytes:
                raise InspectAppError(f"zip member {name} ({human_size(info.file_size)}) is over the upload limit "
                                      f"of {human_size(max_member_bytes)}")
            if info.compress_size and info.file_size / info.compress_size > MAX_COMPRESSION_RATIO:
                raise InspectAppError(f"zip member {name} compresses {info.file_size / info.compress_size:.0f}:1, "
                                      "far more than images do: refused as a possible zip bomb")
            chunks, size = [], 0
            try:
                with archive.open(info) as member:
                    while chunk := member.read(1 << 20):
                        size += len(chunk)
                        total += len(chunk)
                        if size > max_member_bytes or total > max_total_bytes:
                            raise InspectAppError(
                                f"zip archive expands beyond its limits ({human_size(max_member_bytes)} per file, "
                                f"{human_size(max_total_bytes)} in total): refused")
                        chunks.append(chunk)
            except (zipfile.BadZipFile, RuntimeError, OSError, EOFError) as exc:
                raise InspectAppError(f"zip member {name} cannot be read ({exc})") from None
            out.append(Upload(name, b"".join(chunks)))
    return out


def copy_into(source: Path, folder: Path) -> Path:
    """Copy a stored image into a good-images folder under a fresh name; return the new path."""
    if not source.is_file():
        raise InspectAppError(f"stored image {source} is not on disk (it may have been pruned by the retention policy)")
    folder.mkdir(parents=True, exist_ok=True)
    target = _unique(folder, safe_file_name(source.name))
    shutil.copy2(source, target)
    return target
