"""Checks a generated sentence against the facts before anyone sees it.

A text passes when it agrees with the verdict (no "no defect" on a FAIL, no defect or removal on a
PASS), a FAIL text tells the operator to remove the part and never to keep it, its first defect
kind and first location are those of the first region (the strongest on the part), and it names no
kind, location or size that is not in the facts, and it states no percentage (a kind's confidence is said in
words, so no number can be read as the defect's probability). The checks read English words; text in other
languages fails them and is replaced by the deterministic sentence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from inspect_app.explain.facts import Facts
from inspect_app.vocabulary import DEFECT_KINDS

MAX_CHARS = 300
MAX_SENTENCES = 3

# Words that name each defect kind (stems; matched at word starts).
KIND_WORDS: dict[str, tuple[str, ...]] = {
    "crack": ("crack", "fracture"),
    "scratch": ("scratch", "scuff"),
    "contamination": ("contamina", "foreign", "debris", "particle", "dirt"),
    "hole": ("hole", "pit", "blowhole", "cavit", "pore"),
    "broken": ("broken", "missing", "chip", "break"),
    "deformed": ("bent", "deform", "dent", "uneven", "warp"),
    "stain": ("stain", "discolo", "blotch", "spot"),
}
assert set(KIND_WORDS) == set(DEFECT_KINDS), "every defect kind needs its words"

_LOCATION = re.compile(
    r"\b(?:(top|upper|bottom|lower)[\s-]+(left|right)|(top|upper|bottom|lower|left|right|centre|center|middle))\b")
_SIZES = {"small": "small", "tiny": "small", "minor": "small", "medium": "medium", "moderate": "medium",
          "large": "large", "big": "large", "huge": "large"}
_SIZE = re.compile(r"\b(" + "|".join(_SIZES) + r")\b")
_NO_DEFECT = re.compile(r"\b(no (visible )?(defects?|anomal\w*|damage|problems?|issues?)|defect[- ]free|without "
                        r"(any )?defects?|looks? (good|fine|normal|ok)|is (good|fine|ok|normal)|passe[sd]|pass\b)")
_REMOVE = re.compile(r"\b(remove|reject|discard|scrap|set (it )?aside|take (it|the part|this part) off|pull)")
_KEEP = re.compile(r"\b(keep|accept|continue|can go on|ship|leave (it|the part) on|approve|let it pass)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_PERCENT = re.compile(r"\d\s*%|\bper ?cent\b")


@dataclass
class Validation:
    ok: bool
    problems: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str | None:
        return "; ".join(self.problems) or None


def _canonical_location(match: re.Match) -> str:
    vert, horiz, single = match.groups()
    norm = {"upper": "top", "lower": "bottom", "center": "centre", "middle": "centre"}
    if single:
        return norm.get(single, single)
    return f"{norm.get(vert, vert)}-{horiz}"


def mentioned_locations(text: str) -> list[str]:
    """Location words in order of appearance, in the 3x3 vocabulary (``upper left`` -> ``top-left``)."""
    return [_canonical_location(m) for m in _LOCATION.finditer(text.lower())]


def mentioned_kinds(text: str, own_kinds: Iterable[str] = ()) -> list[str]:
    """Defect kinds in order of first appearance: the built-in ones by their words, a product's own
    kinds (``own_kinds``, free text such as "burr") by their names."""
    lower = text.lower()
    words = {**KIND_WORDS, **{k: (re.escape(k.lower()),) for k in own_kinds if k not in KIND_WORDS}}
    hits = []
    for kind, stems in words.items():
        positions = [m.start() for stem in stems for m in re.finditer(r"\b" + stem, lower)]
        if positions:
            hits.append((min(positions), kind))
    return [kind for _, kind in sorted(hits)]


def mentioned_sizes(text: str) -> list[str]:
    return [_SIZES[m.group(1)] for m in _SIZE.finditer(text.lower())]


def says_no_defect(text: str) -> bool:
    return bool(_NO_DEFECT.search(text.lower()))


def says_defect(text: str) -> bool:
    lower = text.lower()
    named = bool(re.search(r"\b(defect|damage|anomal)", lower)) and not says_no_defect(text)
    return bool(mentioned_kinds(text)) or named


def strip_product(text: str, facts: Facts) -> str:
    """The product name is the user's word, not a claim of the model: "crack tester" names no crack."""
    return re.sub(re.escape(facts.product), " ", text, flags=re.IGNORECASE) if facts.product else text


def validate(text: str, facts: Facts) -> Validation:
    """Whether ``text`` may be shown for ``facts`` (see the module docstring)."""
    problems: list[str] = []
    if not text.strip():
        return Validation(False, ["empty text"])
    text = strip_product(text, facts)
    lower = text.lower()
    if facts.verdict == "FAIL":
        if says_no_defect(text):
            problems.append("says there is no defect on a FAIL")
        if _KEEP.search(lower):
            problems.append("tells the operator to keep a FAIL part")
        if not _REMOVE.search(lower):
            problems.append("gives no removal action for a FAIL")
    elif facts.verdict == "PASS":
        if says_defect(text):
            problems.append("describes a defect on a PASS")
        if _REMOVE.search(lower):
            problems.append("tells the operator to remove a PASS part")
    if _PERCENT.search(lower):
        problems.append("states a percentage (a kind's confidence is said in words)")
    locations, kinds, sizes = mentioned_locations(text), mentioned_kinds(text, facts.kinds), mentioned_sizes(text)
    if facts.verdict == "FAIL" and facts.regions:
        top = facts.regions[0]
        if not locations:
            problems.append("names no location")
        elif locations[0] != top.location:
            problems.append(f"first location {locations[0]!r} is not the first region's {top.location!r}")
        if top.kind and (not kinds or kinds[0] != top.kind):
            problems.append(f"first defect kind {kinds[0] if kinds else None!r} is not {top.kind!r}")
    extra_locations = sorted(set(locations) - facts.locations)
    extra_kinds = sorted(set(kinds) - facts.kinds)
    extra_sizes = sorted(set(sizes) - facts.sizes)
    if extra_locations:
        problems.append(f"location not in the facts: {', '.join(extra_locations)}")
    if extra_kinds:
        problems.append(f"defect kind not in the facts: {', '.join(extra_kinds)}")
    if extra_sizes:
        problems.append(f"size not in the facts: {', '.join(extra_sizes)}")
    return Validation(not problems, problems)


def cut_to_sentences(text: str, max_chars: int = MAX_CHARS, max_sentences: int = MAX_SENTENCES) -> str:
    """At most ``max_sentences`` whole sentences within ``max_chars``; an unfinished last sentence
    (the model ran out of tokens) is dropped when a finished one precedes it."""
    text = re.sub(r"\s+", " ", text).strip()
    sentences = [s for s in _SENTENCE_END.split(text) if s]
    kept: list[str] = []
    for sentence in sentences[:max_sentences]:
        if len(" ".join(kept + [sentence])) > max_chars:
            break
        kept.append(sentence)
    if kept and len(kept) > 1 and not kept[-1].endswith((".", "!", "?")):
        kept.pop()
    if not kept:  # one over-long sentence: cut at a word boundary
        cut = text[:max_chars].rsplit(" ", 1)[0].rstrip(",;:")
        return cut + "."
    return " ".join(kept)
