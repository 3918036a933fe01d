"""The station's spool on its own: committed entries survive a reopen (a crash), a frame is
spooled once, entries come back in order and as the results they were."""

from __future__ import annotations

from inspect_app.line.spool import Spool, SpoolEntry
from inspect_app.results import InspectionResult, Region, Verdict


def result(name: str) -> InspectionResult:
    region = Region(bbox=(1, 2, 30, 40), area_fraction=0.01, centroid=(15.0, 21.0), location="top-left",
                    elongation=3.5, shape="elongated", size="medium", peak_score=0.8, defect_type="crack",
                    defect_probability=0.7)
    return InspectionResult(name, Verdict.FAIL, score=0.8, raw_score=2.5, regions=[region], image_size=(64, 48),
                            part_box=(0, 0, 64, 48), timings_ms={"total": 12.0}, product="bottle", mode="fused",
                            profile_version="v1", explanation="FAIL: a crack.", explanation_source="template")


def test_spool_keeps_order_and_each_frame_once_across_a_reopen(tmp_path):
    spool = Spool(tmp_path / "spool.db")
    for i in range(3):
        spool.append(SpoolEntry(f"key{i}", 100.0 + i, "L1", result(f"p{i}.png"), {"seq": i}))
    spool.append(SpoolEntry("key1", 999.0, None, result("again.png"), {}))  # the same frame again
    assert len(spool) == 3 and spool.has("key2") and not spool.has("key9")
    spool.close()
    reopened = Spool(tmp_path / "spool.db")  # as after kill -9: everything appended is there
    entries = reopened.oldest()
    assert [e.frame_key for e in entries] == ["key0", "key1", "key2"] and entries[1].time == 101.0
    assert entries[1].result.to_dict() == result("p1.png").to_dict() and entries[1].message == {"seq": 1}
    reopened.remove(entries[0].seq)
    assert len(reopened) == 2 and [e.frame_key for e in reopened.oldest(1)] == ["key1"]
    reopened.close()
