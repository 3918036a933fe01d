"""Text side of image-text scoring: prompt ensembles per product and the encoders that embed them."""

from __future__ import annotations

from inspect_app.text.encoders import (
    ClipTextEncoder,
    MiniLMTextEncoder,
    PromptCache,
    TextEncoder,
    text_embeddings,
)
from inspect_app.text.prompts import PromptError, build_prompts

__all__ = [
    "ClipTextEncoder",
    "MiniLMTextEncoder",
    "PromptCache",
    "PromptError",
    "TextEncoder",
    "build_prompts",
    "text_embeddings",
]
