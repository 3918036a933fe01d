"""Image decoding: every format becomes HxWx3 uint8, every bad file a clear ImageLoadError."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from inspect_app.data.images import MAX_PIXELS, _decode_plain_png, list_images, load_image
from inspect_app.errors import ImageLoadError, NotEnoughImagesError


def _rgb(h: int = 24, w: int = 32) -> np.ndarray:
    """Distinct values per channel and position, so channel or axis mix-ups show."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 7 % 256, y * 9 % 256, (x + y) * 3 % 256], axis=2).astype(np.uint8)


def _png_claiming(width: int, height: int) -> bytes:
    """A valid 1-bit grayscale PNG of ``width`` x ``height`` whose all-zero rows compress to a few KB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# ---------------------------------------------------------------- formats that must load


@pytest.mark.parametrize("ext", ["png", "bmp", "tif", "tiff"])
def test_lossless_formats_round_trip_exactly(tmp_path: Path, ext: str):
    image = _rgb()
    path = tmp_path / f"im.{ext}"
    Image.fromarray(image).save(path)
    out = load_image(path)
    assert out.dtype == np.uint8 and out.shape == (24, 32, 3)
    np.testing.assert_array_equal(out, image)


def test_jpeg_loads_close_to_original(tmp_path: Path):
    image = np.full((32, 48, 3), (200, 100, 50), np.uint8)
    path = tmp_path / "im.jpg"
    Image.fromarray(image).save(path, quality=95)
    out = load_image(path)
    assert out.shape == (32, 48, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - image).max() <= 4


def test_jpeg_exif_orientation_is_applied(tmp_path: Path):
    image = np.zeros((20, 40, 3), np.uint8)  # landscape: 40 wide, 20 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(image).save(path, exif=exif.tobytes())
    assert load_image(path).shape == (40, 20, 3)


def test_grayscale_becomes_three_equal_channels(tmp_path: Path):
    gray = _rgb()[..., 0]
    path = tmp_path / "gray.png"
    Image.fromarray(gray, mode="L").save(path)
    out = load_image(path)
    assert out.shape == (24, 32, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_rgba_drops_alpha_keeps_colour(tmp_path: Path):
    rgba = np.dstack([_rgb(), np.full((24, 32), 128, np.uint8)])
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    np.testing.assert_array_equal(load_image(path), rgba[..., :3])


@pytest.mark.parametrize("transparency", [False, True])
def test_palette_image_is_expanded(tmp_path: Path, transparency: bool):
    image = np.zeros((16, 16, 3), np.uint8)
    image[:, 8:] = (255, 0, 0)
    pal = Image.fromarray(image).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    assert pal.mode == "P"
    path = tmp_path / "pal.png"
    pal.save(path, transparency=0) if transparency else pal.save(path)
    out = load_image(path)
    assert out.shape == (16, 16, 3)
    np.testing.assert_array_equal(out[:, 8:], np.broadcast_to((255, 0, 0), (16, 8, 3)))
    np.testing.assert_array_equal(out[:, :8], 0)


def test_16bit_png_is_scaled_not_clipped(tmp_path: Path):
    ramp = np.tile(np.linspace(0, 65535, 32).astype(np.uint16), (16, 1))
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    out = load_image(path)
    assert out.shape == (16, 32, 3) and out.dtype == np.uint8
    assert out[0, 0, 0] == 0 and out[0, -1, 0] == 255
    # a linear ramp stays a ramp (clipping at 255 would flatten most of it)
    assert np.all(np.diff(out[0, :, 0].astype(int)) > 0)
    np.testing.assert_allclose(out[0, :, 0], ramp[0] / 257.0, atol=1)


def test_bytes_and_pil_inputs(tmp_path: Path):
    image = _rgb()
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    np.testing.assert_array_equal(load_image(buf.getvalue()), image)
    np.testing.assert_array_equal(load_image(Image.fromarray(image)), image)


# ---------------------------------------------------------------- numpy arrays


@pytest.mark.parametrize(
    "array, expected_max",
    [
        (np.full((16, 16), 200, np.uint8), 200),
        (np.full((16, 16, 1), 200, np.uint8), 200),
        (np.full((16, 16, 3), 200, np.uint8), 200),
        (np.full((16, 16, 4), 200, np.uint8), 200),
        (np.full((16, 16, 3), 65535, np.uint16), 255),
        (np.full((16, 16, 3), 1.0, np.float32), 255),  # float in [0, 1]
        (np.full((16, 16, 3), 0.5, np.float64), 127),
        (np.full((16, 16, 3), 300, np.int64), 255),  # out of range clipped
        (np.full((16, 16), -5.0, np.float64), 0),
    ],
)
def test_arrays_of_any_dtype_become_rgb_uint8(array: np.ndarray, expected_max: int):
    out = load_image(array)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert out.flags["C_CONTIGUOUS"]
    assert int(out.max()) == expected_max and int(out.min()) == expected_max


def test_rgba_array_keeps_rgb_channels():
    rgba = np.dstack([_rgb(), np.zeros((24, 32), np.uint8)])
    np.testing.assert_array_equal(load_image(rgba), _rgb())


@pytest.mark.parametrize("shape", [(16, 16, 2), (3, 16, 16), (16,), (4, 4, 3), (16, 16, 3, 1)])
def test_bad_array_shapes_are_refused(shape):
    with pytest.raises(ImageLoadError, match="shape"):
        load_image(np.zeros(shape, np.uint8))


# ---------------------------------------------------------------- bad files: clear errors naming the file


def _assert_refused(path: Path, *words: str) -> str:
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    message = str(info.value)
    assert str(path) in message, message
    for word in words:
        assert word in message.lower(), message
    assert "\n" not in message
    return message


def test_zero_byte_file(tmp_path: Path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    _assert_refused(path, "empty")


def test_missing_file(tmp_path: Path):
    _assert_refused(tmp_path / "nope.png", "no such file")


@pytest.mark.parametrize(("shape", "dtype"), [((40, 56, 3), np.uint8), ((40, 56), np.uint8), ((40, 56, 3), np.uint16)])
def test_plain_pngs_take_libpngs_decoder_and_get_pillows_pixels(shape: tuple[int, ...], dtype: type):
    """RGB and grey PNGs are decoded by imagecodecs' libpng (faster); the pixels are those of Pillow's path."""
    pixels = np.random.default_rng(3).integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    data = cv2.imencode(".png", pixels)[1].tobytes()
    fast = _decode_plain_png(data, Image.open(io.BytesIO(data)))
    assert fast is not None and fast.shape == (40, 56, 3) and fast.dtype == np.uint8
    assert np.array_equal(load_image(data), load_image(Image.open(io.BytesIO(data))))  # a PIL image: Pillow's path
    assert np.array_equal(load_image(data), fast)


def test_text_file_renamed_png(tmp_path: Path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n" * 20)
    _assert_refused(path, "not a recognised image")


@pytest.mark.parametrize("fmt, ext", [("PNG", "png"), ("JPEG", "jpg")])
def test_truncated_files(tmp_path: Path, fmt: str, ext: str):
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)  # noise: no early end of data
    buf = io.BytesIO()
    Image.fromarray(noisy).save(buf, format=fmt)
    data = buf.getvalue()
    path = tmp_path / f"cut.{ext}"
    path.write_bytes(data[: len(data) // 2])
    _assert_refused(path, "truncated")


def test_truncated_files_stay_refused_after_a_library_relaxes_pillow(tmp_path: Path, monkeypatch):
    """WeasyPrint (the PDF reports) switches Pillow's process-wide LOAD_TRUNCATED_IMAGES on at
    import; a station that has built a report must still refuse a half-written frame."""
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    noisy = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noisy).save(buf, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    _assert_refused(path, "truncated")


def test_header_claiming_100_megapixels_is_refused_by_our_guard(tmp_path: Path):
    data = _png_claiming(10_000, 10_000)
    assert len(data) < 100_000  # the file itself is tiny: only the header is big
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    message = _assert_refused(path, "10000x10000", "limit")
    assert f"{MAX_PIXELS:,}" in message


def test_header_claiming_400_megapixels_is_an_image_load_error(tmp_path: Path):
    """Beyond 2x PIL's own limit, PIL raises DecompressionBombError in Image.open: it must still
    come out as ImageLoadError so a batch reports the file and goes on."""
    path = tmp_path / "bigbomb.png"
    path.write_bytes(_png_claiming(20_000, 20_000))
    _assert_refused(path)


def test_oversized_array_is_refused():
    big = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), shape=(8000, 8000), strides=(0, 0))
    with pytest.raises(ImageLoadError, match="limit"):
        load_image(big)


def test_too_small_image(tmp_path: Path):
    path = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((4, 30, 3), np.uint8)).save(path)
    _assert_refused(path, "too small", "30x4")


def test_unsupported_input_type():
    with pytest.raises(ImageLoadError, match="unsupported"):
        load_image(12345)  # type: ignore[arg-type]


# ---------------------------------------------------------------- list_images


def test_list_images_sorted_and_skips_other_files(tmp_path: Path):
    for name in ["b.png", "a.JPG", "c.tiff"]:
        Image.fromarray(_rgb()).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden.png").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    Image.fromarray(_rgb()).save(tmp_path / "sub" / "deep.png")
    found, skipped = list_images(tmp_path)
    assert [p.name for p in found] == ["a.JPG", "b.png", "c.tiff"]
    assert [p.name for p in skipped] == ["notes.txt"]


def test_list_images_empty_folder(tmp_path: Path):
    with pytest.raises(NotEnoughImagesError, match="0 image file"):
        list_images(tmp_path)
    assert list_images(tmp_path, min_count=0) == ([], [])


def test_list_images_only_non_images(tmp_path: Path):
    (tmp_path / "readme.md").write_text("x")
    (tmp_path / "data.csv").write_text("x")
    with pytest.raises(NotEnoughImagesError, match=r"2 non-image file"):
        list_images(tmp_path)


def test_list_images_missing_folder_and_file_instead_of_folder(tmp_path: Path):
    with pytest.raises(NotEnoughImagesError, match="does not exist"):
        list_images(tmp_path / "missing")
    file = tmp_path / "f.png"
    Image.fromarray(_rgb()).save(file)
    with pytest.raises(NotEnoughImagesError, match="not a folder"):
        list_images(file)


def test_list_images_min_count(tmp_path: Path):
    for i in range(2):
        Image.fromarray(_rgb()).save(tmp_path / f"{i}.png")
    with pytest.raises(NotEnoughImagesError, match="at least 3"):
        list_images(tmp_path, min_count=3)
    assert len(list_images(tmp_path, min_count=2)[0]) == 2
