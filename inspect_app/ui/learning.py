"""Learning from feedback without a refit: parts an operator marked "good" (false rejects) join the
product's memory of good patches through ``Inspector.learn_good``, which places the threshold again
in seconds. Before approving, the engineer sees what the candidate would stop catching: the stored
FAILs re-scored with the candidate memory. Approval keeps the previous profile version, so it can
be undone; the line and the UI's ``InspectorCache`` see the new profile file.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from inspect_app.errors import InspectAppError
from inspect_app.profile import PROFILE_FILE, check_product_name
from inspect_app.results import THRESHOLD, Verdict
from inspect_app.store import ResultReader, StoredResult

if TYPE_CHECKING:
    from inspect_app.inspector import Inspector

VERSIONS_DIR = "_versions"  # <models>/_versions/<product>/<profile version>/: earlier profiles, for undo
LEARNED_PREFIX = "result:"  # the name a learnt part gets in the profile's "learned" list
RESCORE_LIMIT = 200  # newest stored FAILs re-scored with a candidate


@dataclass(frozen=True)
class Rescored:
    """One stored FAIL scored again with the candidate memory."""

    result_id: int
    file: str | None
    score_before: float
    score_after: float

    @property
    def still_caught(self) -> bool:
        return self.score_after > THRESHOLD


@dataclass
class Candidate:
    """A product's memory with the false rejects learnt, not yet saved."""

    product: str
    learnt: list[int]  # result ids
    inspector: Inspector
    version_before: str | None
    threshold_before: float
    threshold_after: float
    rescored: list[Rescored]
    learn_s: float  # loading the profile and learning the parts (the new threshold)
    rescore_s: float  # re-scoring the stored FAILs (the preview)

    @property
    def stops_catching(self) -> list[Rescored]:
        return [r for r in self.rescored if not r.still_caught]


def learned_ids(inspector: Inspector) -> set[int]:
    """Result ids already in the product's memory (from the profile's "learned" list)."""
    out = set()
    for entry in inspector.meta.get("learned", []):
        name = str(entry.get("name") or "")
        if name.startswith(LEARNED_PREFIX) and name[len(LEARNED_PREFIX):].isdigit():
            out.add(int(name[len(LEARNED_PREFIX):]))
    return out


def pending_false_rejects(store: ResultReader, product: str, already: set[int]) -> list[StoredResult]:
    """Stored FAILs of the product marked as false rejects, with their image kept, not yet learnt."""
    found = store.query(product=product, verdict=Verdict.FAIL, limit=1000)
    return [r for r in found if r.id not in already and any(f["kind"] == "false_reject" for f in r.feedback)
            and r.image_path and Path(r.image_path).is_file()]


def build_candidate(models_dir: Path, product: str, parts: list[StoredResult], store: ResultReader) -> Candidate:
    """Learn ``parts`` into a fresh copy of the product's Inspector and re-score its stored FAILs."""
    from inspect_app.inspector import Inspector

    if not parts:
        raise InspectAppError("choose at least one false reject to learn")
    lost = [p.id for p in parts if not (p.image_path and Path(p.image_path).is_file())]
    if lost:
        raise InspectAppError(f"result(s) {', '.join(map(str, lost))} have no stored image to learn from "
                              "(the retention policy keeps FAIL images and a sample of PASS images)")
    start = time.perf_counter()
    inspector = Inspector.load(product, models_dir)
    calibration = inspector.calibration
    if calibration is None:
        raise InspectAppError(f"product {product!r} has no calibration; refit it")
    version, before = inspector.profile_version, calibration.raw_threshold
    learnt_ids = {p.id for p in parts}
    fails = [r for r in store.query(product=product, verdict=Verdict.FAIL, limit=RESCORE_LIMIT)
             if r.id not in learnt_ids and r.image_path and Path(r.image_path).is_file() and r.score is not None]
    inspector.learn_good([str(p.image_path) for p in parts], names=[f"{LEARNED_PREFIX}{p.id}" for p in parts])
    learnt_at = time.perf_counter()
    results = inspector.predict_batch([r.image_path for r in fails if r.image_path]) if fails else []
    rescored = [Rescored(r.id, r.file, float(r.score or 0.0), float(res.score if res.score is not None else 1.0))
                for r, res in zip(fails, results, strict=True)]
    after = inspector.calibration
    return Candidate(product, sorted(learnt_ids), inspector, version, before,
                     after.raw_threshold if after is not None else before, rescored, learnt_at - start,
                     time.perf_counter() - learnt_at)


def _version_dir(models_dir: Path, product: str, version: str | None) -> Path:
    label = (version or "unversioned").replace(":", "").replace("+", "_")
    return models_dir / VERSIONS_DIR / check_product_name(product) / label


def approve(candidate: Candidate, models_dir: Path) -> str | None:
    """Keep the current profile as an earlier version, save the candidate; its new version."""
    current = models_dir / check_product_name(candidate.product)
    kept = _version_dir(models_dir, candidate.product, candidate.version_before)
    if not kept.exists():
        shutil.copytree(current, kept)
    candidate.inspector.save(models_dir)
    return candidate.inspector.profile_version


def earlier_versions(models_dir: Path, product: str) -> list[Path]:
    """Kept earlier profiles of the product, newest first."""
    folder = models_dir / VERSIONS_DIR / check_product_name(product)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if (p / PROFILE_FILE).is_file()]
    return sorted(found, key=lambda p: p.name, reverse=True)


def restore(models_dir: Path, product: str, kept: Path) -> None:
    """Put a kept earlier profile back in place (swapped in atomically, like a save)."""
    folder = models_dir / check_product_name(product)
    if not (kept / PROFILE_FILE).is_file():
        raise InspectAppError(f"{kept} holds no profile to restore")
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    shutil.copytree(kept, tmp)
    old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(kept, ignore_errors=True)  # it is the current profile again
