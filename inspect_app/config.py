"""Typed configuration of a product's inspector (stored verbatim in its profile)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class BackboneConfig(BaseModel):
    """Which frozen image encoder to use and what it returns.

    ``levels`` name the encoder stages (EfficientNet-Lite) or transformer blocks (OpenCLIP)
    whose patch features are used.
    """

    name: Literal["efficientnet-lite", "openclip"] = "efficientnet-lite"
    variant: str = "lite0"
    pretrained: str | None = None
    levels: tuple[int, ...] = (3, 5)
    image_size: int = 256  # side of the square input; with keep_aspect, its long side
    keep_aspect: bool = False  # follow the good images' aspect ratio instead of squashing them square
    choose_input: bool = True  # the fit picks size and shape from its good images (self_config); else the two above
    input_shape: tuple[int, int] | None = None  # (height, width): written by a fit from its good images
    # Each image's grey levels standardised before encoding: None lets the fit decide (grayscale
    # good images: yes), which then writes its choice here.
    standardise_exposure: bool | None = None


class ImageImageConfig(BaseModel):
    """PatchCore-like memory of normal patches."""

    coreset_ratio: float = Field(0.01, gt=0, le=1)
    coreset_projection_dim: int = 64
    aggregation_kernel: int = 3
    blur_sigma: float = 4.0


class ImageTextConfig(BaseModel):
    """Projections into the text space, trained on synthesised defects of the good images."""

    text_encoder: Literal["auto", "minilm", "clip"] = "auto"  # auto: CLIP text for openclip, else MiniLM
    synthetic_per_image: int = Field(4, ge=1)
    max_synthetic: int = Field(800, ge=16)
    steps: int = Field(600, ge=1)
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(1e-2, gt=0)


class CalibrationConfig(BaseModel):
    """How the pass/fail threshold is chosen from normal images only."""

    target_frr: float = Field(0.01, gt=0, lt=0.5)
    holdout_fraction: float = Field(0.2, gt=0, lt=0.9)


Mode = Literal["image-image", "image-text", "fused", "zero-shot"]
MODES: tuple[Mode, ...] = ("image-image", "image-text", "fused", "zero-shot")
Decoder = Literal["image-image", "image-text"]
# Which decoders each mode needs.
MODE_DECODERS: dict[Mode, tuple[Decoder, ...]] = {
    "image-image": ("image-image",), "image-text": ("image-text",),
    "fused": ("image-image", "image-text"), "zero-shot": ("image-text",)}


class InspectorConfig(BaseModel):
    mode: Mode = "image-image"  # fused did not earn the default on the matrix (RESULTS "The default mode")
    backbone: BackboneConfig = BackboneConfig()
    image_image: ImageImageConfig = ImageImageConfig()
    image_text: ImageTextConfig = ImageTextConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    k_shot: int | None = Field(None, ge=1)
    seed: int = 0

    def fitted_decoders(self) -> tuple[Decoder, ...]:
        """The decoders a fit trains: the mode's (defect kinds need only the image-image part's memory)."""
        return MODE_DECODERS[self.mode]
