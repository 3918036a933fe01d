"""The one place that names defect kinds: the label phrases a synthesised defect may carry, and
which kinds a real dataset's defect folder corresponds to.

The kind names are stable identifiers (later stages map dataset folders to them); the first
phrase of each kind is its canonical label, the others are paraphrases used for variety when
training text-conditioned decoders.
"""

from __future__ import annotations

DEFECT_VOCABULARY: dict[str, list[str]] = {
    "crack": ["a crack", "a cracked surface", "a fracture line", "a fine crack"],
    "scratch": ["a scratch", "a scratched surface", "a scuff mark", "a thin scratch"],
    "contamination": ["contamination", "foreign material", "a foreign particle", "debris on the surface"],
    "hole": ["a hole", "a pit", "a blowhole", "a small cavity"],
    "broken": ["a missing or broken piece", "a broken edge", "a chipped area", "missing material"],
    "deformed": ["a bent or deformed area", "a dent", "an uneven surface", "a warped area"],
    "stain": ["a stain or discolouration", "a stain", "a discoloured patch", "a blotch"],
}
DEFECT_KINDS: tuple[str, ...] = tuple(DEFECT_VOCABULARY)
NORMAL_KIND = "normal"
NORMAL_LABEL = "a good part without defects"

# Defect folder name (MVTec-style test/<folder>) -> kinds a synthesised defect may stand for.
FOLDER_KINDS: dict[str, set[str]] = {
    # MVTec AD bottle
    "broken_large": {"broken"},
    "broken_small": {"broken"},
    "contamination": {"contamination"},
    # Magnetic tile
    "blowhole": {"hole"},
    "break": {"broken"},
    "crack": {"crack"},
    "fray": {"broken", "crack"},
    "uneven": {"deformed"},
    # Lookout cookies
    "cracked": {"crack"},
}


def kinds_for_folder(name: str) -> set[str] | None:
    """Kinds a real defect folder corresponds to, or ``None`` when the folder is not mapped
    (``good`` and unknown names). A folder named after a kind maps to that kind. Matching
    ignores case and surrounding whitespace."""
    key = name.strip().lower()
    if key in FOLDER_KINDS:
        return set(FOLDER_KINDS[key])
    return {key} if key in DEFECT_VOCABULARY else None
