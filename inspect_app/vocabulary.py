"""The one place that names defect kinds: the label phrases a synthesised defect may carry, and
which kinds a real dataset's defect folder corresponds to; and the one rule that turns a product
name into a phrase that prompts and explanation sentences may contain.

The kind names are stable identifiers (later stages map dataset folders to them); the first
phrase of each kind is its canonical label, the others are paraphrases used for variety when
training text-conditioned decoders.
"""

from __future__ import annotations

import unicodedata

from inspect_app.errors import InspectAppError

MAX_PRODUCT_CHARS = 40

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


class ProductNameError(InspectAppError):
    """A product name has no letters or digits to describe the product with."""


def sanitize_product(name: str | None, fallback: str | None = None) -> str:
    """A user-given product name as a short, plain, lower-case phrase for text encoder prompts
    and explanation sentences: it can smuggle no instruction, verdict, sentence end, newline or
    template field into them.

    Unicode is NFKC-normalised, invisible and control characters other than whitespace are
    dropped, underscores become spaces (``metal_nut`` -> ``metal nut``), anything but letters,
    digits and hyphens becomes a space, whitespace is collapsed, and the phrase is cut to
    ``MAX_PRODUCT_CHARS`` at a word boundary.
    A name with nothing left raises ``ProductNameError``, or gives ``fallback`` when one is given."""
    text = unicodedata.normalize("NFKC", name if isinstance(name, str) else "").replace("_", " ")
    kept = "".join(ch if ch.isalnum() or ch == "-" else " " for ch in text
                   if ch.isspace() or unicodedata.category(ch)[0] != "C")  # zero-width and control: dropped
    phrase = " ".join(kept.split()).lower()
    if len(phrase) > MAX_PRODUCT_CHARS:
        cut = phrase[:MAX_PRODUCT_CHARS + 1]
        phrase = cut.rsplit(" ", 1)[0] if " " in cut else cut[:MAX_PRODUCT_CHARS]
    phrase = phrase.strip(" -")
    if any(ch.isalnum() for ch in phrase):
        return phrase
    if fallback is not None:
        return fallback
    raise ProductNameError(f"product name {name!r} has no letters or digits to describe it with")
