"""Frozen image encoders behind one interface (``Backbone.encode``)."""

from __future__ import annotations

from inspect_app.backbones.base import Backbone, EncodedImages
from inspect_app.config import BackboneConfig


def create_backbone(config: BackboneConfig) -> Backbone:
    """Build the encoder a config names (EfficientNet-Lite is the offline, embedded default)."""
    if config.name == "efficientnet-lite":
        from inspect_app.backbones.efficientnet_lite import EfficientNetLiteEncoder

        return EfficientNetLiteEncoder(config.variant, config.levels, config.image_size,
                                       pretrained=config.pretrained != "none")
    if config.name == "openclip":
        from inspect_app.backbones.openclip import OpenClipEncoder

        return OpenClipEncoder(config.variant, config.pretrained, config.levels, config.image_size)
    raise ValueError(f"unknown backbone {config.name!r}")


__all__ = ["Backbone", "EncodedImages", "create_backbone"]
