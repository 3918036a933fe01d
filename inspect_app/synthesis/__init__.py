"""Defect synthesis: defective training samples (image, mask, label phrase, kind, location, size)
made from good images, for decoders trained on normal images only."""

from inspect_app.synthesis.defects import DefectSynthesizer, SynthesisError, SyntheticDefect, normal_sample
from inspect_app.synthesis.part import Part, analyse_part

__all__ = ["DefectSynthesizer", "Part", "SynthesisError", "SyntheticDefect", "analyse_part", "normal_sample"]
