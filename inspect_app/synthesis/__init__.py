"""Defect synthesis: defective training samples (image, mask, label phrase, kind, location, size)
made from good images, for decoders trained on normal images only."""

from inspect_app.synthesis.defects import DefectSynthesizer, SyntheticDefect, normal_sample, size_word
from inspect_app.synthesis.part import Part, analyse_part
from inspect_app.synthesis.vocabulary import (
                                              DEFECT_KINDS,
                                              DEFECT_VOCABULARY,
                                              FOLDER_KINDS,
                                              NORMAL_KIND,
                                              NORMAL_LABEL,
                                              kinds_for_folder,
)

__all__ = [
    "DEFECT_KINDS", "DEFECT_VOCABULARY", "FOLDER_KINDS", "NORMAL_KIND", "NORMAL_LABEL", "DefectSynthesizer",
    "Part", "SyntheticDefect", "analyse_part", "kinds_for_folder", "normal_sample", "size_word",
]
