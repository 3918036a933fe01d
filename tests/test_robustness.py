"""Never crash on a real image set: property tests over generated edge cases.

Hypothesis builds sets of good images the way users bring them (grayscale, 16-bit PNGs and
arrays, RGBA, textures that fill the frame, parts touching the border, 4:1 and 1:4 frames, 48 px
and 4000 px frames, near-uniform frames, mixed sizes, 1 to 5 images, now and then an unreadable
file among them) and checks that ``Inspector.fit`` and ``predict`` in every mode the embedded
encoder supports either work (a PASS/FAIL verdict, finite scores, a map of the model's size,
regions inside the image) or raise a documented user error. The runs are derandomised, so CI
always sees the same examples; ``INSPECT_APP_PROPERTY_EXAMPLES`` raises their number for a long
run (for instance 200).
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from inspect_app.config import BackboneConfig, ImageTextConfig, InspectorConfig, Mode
from inspect_app.data.images import ImageInput, load_image
from inspect_app.decoders.image_text import Unplaceable, build_training_set
from inspect_app.errors import ImageLoadError, NotEnoughImagesError, ProfileError
from inspect_app.inspector import Inspector
from inspect_app.results import InspectionResult, Verdict
from inspect_app.synthesis import DefectSynthesizer, SynthesisError
from inspect_app.vocabulary import DEFECT_KINDS

from conftest import good_image

EXAMPLES = int(os.environ.get("INSPECT_APP_PROPERTY_EXAMPLES", "8"))
INPUT_SIZE = 64
FIT_MODES: tuple[Mode, ...] = ("image-image", "image-text", "fused")
USER_ERRORS = (ImageLoadError, NotEnoughImagesError, ProfileError)  # inspect_app.errors
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

CONTENTS = ("texture", "part", "part-at-border", "near-uniform")
ENCODINGS = ("rgb", "grey", "grey-png", "rgba", "rgba-png", "uint16", "png16", "jpeg-bytes")
ASPECTS = (1.0, 4.0, 0.25)  # width / height
LONG_SIDES = (48, 96, 256, 4000)
# Members a fit must skip with their reason: not an image, 4x4 pixels, NaN pixels, no numbers at all.
JUNK = ("corrupt", "tiny", "nan", "object")


def _config(mode: Mode) -> InspectorConfig:
    """Small input and a short image-text training: the paths are the default's, the cost is not."""
    return InspectorConfig(mode=mode, backbone=BackboneConfig(image_size=INPUT_SIZE),
                           image_text=ImageTextConfig(steps=20, synthetic_per_image=2, max_synthetic=16))


@dataclass(frozen=True)
class Frame:
    """One generated good image: what it shows, how it is encoded, its size and its seed."""

    content: str
    encoding: str
    width: int
    height: int
    seed: int

    def pixels(self) -> np.ndarray:
        """HxWx3 float32 content in 0..255, made at a coarse grid and enlarged (cheap at 4000 px)."""
        rng = np.random.default_rng(self.seed)
        w, h = self.width, self.height
        scale = min(1.0, 128 / max(w, h))
        cw, ch = max(4, round(w * scale)), max(4, round(h * scale))
        grain = cv2.GaussianBlur(rng.normal(0, 1, (ch, cw)).astype(np.float32), (0, 0), 1.2)
        grain = cv2.resize(grain / max(float(grain.std()), 1e-6), (w, h), interpolation=cv2.INTER_LINEAR)
        if self.content == "near-uniform":
            level = float(rng.choice([0.0, 255.0, rng.uniform(20, 235)]))
            grey = level + rng.normal(0, 0.8, (h, w)).astype(np.float32)
        elif self.content == "texture":
            stripes = 25 * np.sin(np.arange(w, dtype=np.float32) / rng.uniform(2, 9))[None, :]
            grey = rng.uniform(70, 180) + 35 * grain + stripes
        else:
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            cx, cy = (0.15 * w, 0.5 * h) if self.content == "part-at-border" else (0.5 * w, 0.5 * h)
            inside = ((xx - cx) / (0.3 * w)) ** 2 + ((yy - cy) / (0.3 * h)) ** 2 <= 1
            background = rng.uniform(5, 40) if rng.uniform() < 0.5 else rng.uniform(210, 250)
            part_level = 255 - background
            grey = np.where(inside, part_level + 15 * grain, background + rng.normal(0, 1.5, (h, w)))
        tint = np.array([1.0, rng.uniform(0.8, 1.0), rng.uniform(0.6, 1.0)], np.float32)
        return np.clip(grey[..., None] * tint, 0, 255).astype(np.float32)

    def source(self, folder: Path) -> ImageInput:
        """The frame as a user would hand it over: an array, a file path or encoded bytes."""
        rgb = self.pixels()
        grey8 = rgb.mean(axis=2).round().astype(np.uint8)
        rgb8 = rgb.round().astype(np.uint8)
        path = folder / f"{self.seed}_{self.encoding}_{self.width}x{self.height}.png"
        if self.encoding == "rgb":
            return rgb8
        if self.encoding == "grey":
            return grey8
        if self.encoding == "rgba":
            return np.dstack([rgb8, np.full(grey8.shape, 200, np.uint8)])
        if self.encoding == "uint16":
            return grey8.astype(np.uint16) * 257 + np.uint16(self.seed % 200)
        if self.encoding == "jpeg-bytes":
            ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR))
            assert ok
            return encoded.tobytes()
        if self.encoding == "grey-png":
            Image.fromarray(grey8, mode="L").save(path)
        elif self.encoding == "rgba-png":
            alpha = np.linspace(0, 255, self.width, dtype=np.float32)[None, :].repeat(self.height, 0)
            Image.fromarray(np.dstack([rgb8, alpha.astype(np.uint8)]), mode="RGBA").save(path)
        else:  # png16: a 16-bit greyscale PNG (Pillow mode I;16)
            Image.fromarray(grey8.astype(np.uint16) * 257).save(path)
        return path


@st.composite
def frames(draw: st.DrawFn, content: str | None = None, huge_square: bool = False) -> Frame:
    """A frame of any content, encoding and shape. Only ``huge_square`` allows 4000x4000 (the
    fits keep 4000 px to 4:1 and 1:4 frames, whose synthesis is already the slowest case)."""
    long_side = draw(st.sampled_from(LONG_SIDES))
    aspect = draw(st.sampled_from(ASPECTS))
    if long_side == 4000 and aspect == 1.0 and not huge_square:
        aspect = 4.0
    width, height = (long_side, round(long_side / aspect)) if aspect >= 1 else (round(long_side * aspect), long_side)
    return Frame(content or draw(st.sampled_from(CONTENTS)), draw(st.sampled_from(ENCODINGS)), width, height,
                 draw(st.integers(0, 10_000)))


@dataclass(frozen=True)
class ImageSet:
    frames: tuple[Frame, ...]
    junk: tuple[str, ...]  # unusable members, one of JUNK


@st.composite
def image_sets(draw: st.DrawFn) -> ImageSet:
    """1 to 5 good frames of one product (same content; one size or mixed sizes), sometimes with an
    unreadable member, sometimes nothing readable at all."""
    content = draw(st.sampled_from(CONTENTS))
    first = draw(frames(content))
    n = draw(st.integers(1, 3)) if draw(st.booleans()) else draw(st.integers(4, 5))
    members = [first]
    for _ in range(n - 1):
        other = draw(frames(content))
        same_size = draw(st.booleans())
        members.append(Frame(content, other.encoding, first.width if same_size else other.width,
                             first.height if same_size else other.height, other.seed))
    junk = draw(st.lists(st.sampled_from(JUNK), max_size=1))
    if draw(st.integers(0, 9)) == 9:
        members = []  # nothing readable: the fit must say so
        junk = junk or ["corrupt"]
    return ImageSet(tuple(members), tuple(junk))


def _junk(kind: str, folder: Path, index: int) -> ImageInput:
    if kind == "tiny":
        return np.zeros((4, 4, 3), np.uint8)
    if kind == "nan":
        return np.full((32, 32), np.nan, np.float32)
    if kind == "object":
        return np.full((32, 32), None, object)
    path = folder / f"junk_{index}.png"
    path.write_bytes(b"\x89PNG not really")
    return path


def check_result(result: InspectionResult, image: np.ndarray, inspector: Inspector, mode: Mode) -> None:
    """A usable verdict: PASS/FAIL, finite scores, a map of the model's size, regions inside the image."""
    h, w = image.shape[:2]
    assert result.error is None, result.error
    assert result.verdict in (Verdict.PASS, Verdict.FAIL) and result.mode == mode
    assert result.score is not None and math.isfinite(result.score)
    assert result.raw_score is not None and math.isfinite(result.raw_score)
    assert result.anomaly_map is not None and result.anomaly_map.shape == inspector.input_shape
    assert np.isfinite(result.anomaly_map).all()
    assert result.image_size == (w, h)
    if result.part_box is not None:
        x0, y0, x1, y1 = result.part_box
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    for region in result.regions:
        x0, y0, x1, y1 = region.bbox
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, (region.bbox, (w, h))
        assert 0 <= region.centroid[0] <= w and 0 <= region.centroid[1] <= h
        assert region.area_fraction >= 0 and math.isfinite(region.peak_score)
        assert region.defect_type is None or region.defect_type in inspector.kinds


def _with_blob(image: np.ndarray) -> np.ndarray:
    """The frame with a dark or light disc: a defect the map may or may not catch, never a crash."""
    out = image.copy()
    h, w = out.shape[:2]
    radius = max(2, min(h, w) // 6)
    cv2.circle(out, (w // 2, h // 2), radius, (0, 0, 0) if out.mean() > 128 else (255, 255, 255), -1)
    return out


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The fits here are tiny: on a busy 2-core machine a second thread only waits for the first
    (a 20-step image-text training took 5-10 s with two threads, 0.2-1 s with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def text_cache(tmp_path_factory):
    """This module's text-embedding cache: the prompts are encoded once for all its fits."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INSPECT_APP_CACHE_DIR", str(tmp_path_factory.mktemp("text-cache")))
        yield


@pytest.mark.parametrize("mode", FIT_MODES)
@PROPERTY
@given(image_set=image_sets())
@example(image_set=ImageSet((Frame("texture", "grey", 512, 512, 82),), ()))  # the reported crash's kind of set
@example(image_set=ImageSet((Frame("part-at-border", "png16", 4000, 1000, 1),
                             Frame("part-at-border", "rgba", 48, 192, 2),
                             Frame("part-at-border", "uint16", 1000, 4000, 3)), ("object",)))
def test_fit_and_predict_work_or_raise_a_user_error(mode, image_set, text_cache):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sources = [f.source(folder) for f in image_set.frames]
        sources += [_junk(kind, folder, i) for i, kind in enumerate(image_set.junk)]
        inspector = Inspector(_config(mode), product="robust")
        if not image_set.frames:
            with pytest.raises(NotEnoughImagesError):
                inspector.fit(sources)
            return
        report = inspector.fit(sources)
        assert report.n_images == len(image_set.frames) and len(report.skipped) == len(image_set.junk)
        assert mode in report.modes and math.isfinite(report.calibration.raw_threshold)
        assert set(report.skipped_defect_kinds) <= set(DEFECT_KINDS)
        assert all(report.skipped_defect_kinds.values())
        if mode == "image-image":
            assert not report.skipped_defect_kinds
        decoded = [load_image(s) for s in sources[:len(image_set.frames)]]
        probes = [*decoded, _with_blob(decoded[0])]
        for predict_mode in report.modes:
            results = inspector.predict(list(probes), mode=predict_mode)
            for result, image in zip(results, probes, strict=True):
                check_result(result, image, inspector, predict_mode)


@pytest.fixture(scope="module")
def rgb_product(text_cache):
    """A fused product fitted on ordinary 256 px RGB parts: it supports every embedded mode."""
    rng = np.random.default_rng(5)
    inspector = Inspector(_config("fused"), product="robust")
    inspector.fit([good_image(rng, 256) for _ in range(6)])
    assert inspector.supported_modes == list(FIT_MODES)
    return inspector


@PROPERTY
@given(frame=frames(huge_square=True))
@example(frame=Frame("texture", "grey", 4000, 3000, 1))
@example(frame=Frame("part", "png16", 48, 48, 2))
def test_any_frame_is_inspected_against_a_product_fitted_on_ordinary_images(frame, rgb_product):
    with tempfile.TemporaryDirectory() as tmp:
        source = frame.source(Path(tmp))
        image = load_image(source)
        for mode in FIT_MODES:
            check_result(rgb_product.predict(source, mode=mode), image, rgb_product, mode)


def test_unusable_frames_get_error_results_and_the_batch_goes_on(rgb_product, tmp_path):
    good = good_image(np.random.default_rng(9), 96)
    batch = [_junk(kind, tmp_path, i) for i, kind in enumerate(JUNK)] + [good]
    results = rgb_product.predict(batch)
    assert [r.verdict for r in results] == [Verdict.ERROR] * len(JUNK) + [results[-1].verdict]
    assert all(r.error for r in results[:-1])
    check_result(results[-1], good, rgb_product, "fused")


def test_zero_shot_without_openclip_weights_fails_with_its_documented_error(tmp_path, monkeypatch):
    """The embedded encoder has no text space; OpenCLIP weights that are not cached cannot load offline."""
    goods = [good_image(np.random.default_rng(i), 64) for i in range(2)]
    with pytest.raises(ProfileError, match="zero-shot mode needs an OpenCLIP backbone"):
        Inspector(InspectorConfig(mode="zero-shot")).fit(goods)
    pytest.importorskip("open_clip")
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    clip = BackboneConfig(name="openclip", variant="ViT-B-32", pretrained="openai", levels=(6, 12), image_size=224)
    with pytest.raises(ProfileError, match="not in the local Hugging Face cache"):
        Inspector(InspectorConfig(mode="zero-shot", backbone=clip)).fit(goods)


SYNTHESIS_SIDES = (8, 9, 12, 16, 17, 24, 48, 96, 512)


@settings(PROPERTY, max_examples=5 * EXAMPLES)
@given(content=st.sampled_from(CONTENTS), width=st.sampled_from(SYNTHESIS_SIDES),
       height=st.sampled_from(SYNTHESIS_SIDES), seed=st.integers(0, 10_000), grey=st.booleans())
def test_synthesis_draws_every_kind_or_refuses_clearly(content, width, height, seed, grey):
    """Any image load_image can return gets each defect kind, or a SynthesisError the fit turns
    into a skipped kind; never another exception, never an empty or invisible defect."""
    image = Frame(content, "rgb", width, height, seed).pixels().round().astype(np.uint8)
    if grey:
        image = np.repeat(image.mean(axis=2, keepdims=True).round().astype(np.uint8), 3, axis=2)
    synthesizer = DefectSynthesizer(seed=seed)
    part = synthesizer.analyse(image)
    for kind in DEFECT_KINDS:
        for _ in range(2):
            try:
                sample = synthesizer.synthesize(image, donor=np.ascontiguousarray(image[::-1]), kind=kind, part=part)
            except SynthesisError:
                continue
            mask = sample.mask.astype(bool)
            assert sample.image.shape == image.shape and mask.shape == image.shape[:2] and mask.sum() >= 6
            changed = np.abs(sample.image.astype(np.int16) - image).max(axis=2) >= 8
            assert changed[mask].mean() >= 0.3 and sample.kind == kind
            assert 0 < sample.area_fraction and math.isfinite(sample.area_fraction)


def _fake_training_set(synthesize, n_images: int = 6, kinds=("crack", "broken", "stain")):
    images = [np.full((32, 32, 3), i * 20, np.uint8) for i in range(n_images)]
    normal = [torch.zeros(n_images, 4, 4, 4)]

    def encode(batch: list[np.ndarray]) -> list[torch.Tensor]:
        return [torch.stack([torch.full((4, 4, 4), float(img.mean())) for img in batch])]

    return build_training_set(images, normal, encode, synthesize, list(kinds), per_image=4, max_synthetic=24,
                              seed=0, batch_size=5)


def test_a_kind_that_cannot_be_drawn_is_skipped_and_the_others_keep_their_share():
    """``broken`` fails everywhere (a texture has no edge to break), ``stain`` on dark images only:
    broken is left out with its reason, stain is drawn on the other images, the set stays full."""
    def synthesize(image, donor, kind, rng):
        if kind == "broken" or (kind == "stain" and image.mean() < 50):
            return Unplaceable(f"no {kind} here")
        return image + 1, np.ones(image.shape[:2], bool)

    data = _fake_training_set(synthesize)
    assert list(data.skipped_kinds) == ["broken"] and "no broken here" in data.skipped_kinds["broken"]
    targets = data.kinds[6:].tolist()
    assert len(targets) == 24 and set(targets) == {1, 3}  # crack and stain, in turn
    assert abs(targets.count(1) - targets.count(3)) <= 1
    assert data.masks.shape == (30, 4, 4) and data.levels[0].shape[0] == 30


def test_no_kind_drawable_is_a_clear_error():
    with pytest.raises(NotEnoughImagesError, match="no defect could be synthesised.*--mode image-image"):
        _fake_training_set(lambda image, donor, kind, rng: Unplaceable("image too plain"))


def test_fit_report_lists_the_kinds_synthesis_could_not_draw(text_cache):
    """On near-black frames a deformation moves and shades black pixels into black: nothing shows,
    so the fused fit trains without it and says so."""
    rng = np.random.default_rng(0)
    goods = [np.clip(rng.normal(1, 0.5, (64, 64)), 0, 255).astype(np.uint8) for _ in range(3)]
    inspector = Inspector(_config("fused"), product="robust")
    report = inspector.fit(goods)
    assert "deformed" in report.skipped_defect_kinds
    assert "no deformed could be placed" in report.skipped_defect_kinds["deformed"]
    assert set(report.skipped_defect_kinds) < set(DEFECT_KINDS)
    check_result(inspector.predict(goods[0]), np.repeat(goods[0][..., None], 3, 2), inspector, "fused")


def test_the_generated_encodings_are_the_formats_they_stand_for(tmp_path):
    """The property tests cover 16-bit and RGBA files only if the generator really writes them."""
    opened = {e: Image.open(Frame("part", e, 96, 24, 3).source(tmp_path)) for e in ("png16", "rgba-png", "grey-png")}
    assert {e: im.mode for e, im in opened.items()} == {"png16": "I;16", "rgba-png": "RGBA", "grey-png": "L"}
    assert Frame("part", "uint16", 96, 24, 3).source(tmp_path).dtype == np.uint16
    rgb = load_image(Frame("part", "rgb", 96, 24, 3).source(tmp_path))
    jpeg = load_image(Frame("part", "jpeg-bytes", 96, 24, 3).source(tmp_path))
    assert rgb.shape == jpeg.shape == (24, 96, 3) and np.abs(jpeg.astype(int) - rgb.astype(int)).mean() < 6
