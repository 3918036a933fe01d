"""Soak test of the line station with real parts: a product fitted in ``--mode`` on a category's
train/good (bottle by default; embedded encoder), a local HTTP MJPEG camera replaying a belt at
20 fps, the Debian mosquitto broker, a SQLite results store, part-present triggering and
explanations on.

The belt shows each test image of the category (good and defective, in turn) for ``--part-frames`` frames
with ``--gap-frames`` empty-belt frames between parts, so every part should be triggered once.
It checks that every part shown gets exactly one stored result and one MQTT result message
(in = triggered = stored = published), reports trigger-to-verdict p50/p99, RSS at start and end,
and whether explanations delayed verdicts: trigger-to-verdict of FAIL parts (explained) against
PASS parts (not explained), and the order of each FAIL's verdict and explanation messages.

    nice -n 5 .venv/bin/python benchmarks/line_soak.py --mode fused [--frames 2000] [--fps 20] [--no-explain]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt

from inspect_app.config import InspectorConfig
from inspect_app.data.images import load_image
from inspect_app.data.mvtec import MVTecCategory
from inspect_app.inspector import Inspector
from inspect_app.line import Station, parse_station_config
from inspect_app.line.memory import cap_malloc_arenas
from inspect_app.line.testing import MjpegCamera, Mosquitto, encode_jpeg
from inspect_app.store import ResultsStore

from common import (
    CATEGORIES,
    RESULTS,
    add_input_option,
    add_mode_option,
    add_threads_option,
    category_dir,
    run_header,
    set_threads,
    with_input,
    write_json,
)

# The station trims the heap every line.memory.TRIM_EVERY_S (30 s); the first trim frees the fit's memory.
SETTLED_S = 45


def rss_mb() -> float:
    """Resident memory of this process now (Linux)."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024


def _p50_p99(figures: dict) -> str:
    return f"{figures['p50']} / {figures['p99']}"


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


class Collector:
    """Subscribes to the station's topics and keeps every message with its arrival time."""

    def __init__(self, port: int, station: str):
        self.messages: dict[str, list[tuple[dict, float]]] = {}
        self.lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"soak-{uuid.uuid4().hex[:6]}")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"inspect/{station}/#", qos=1)
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not ready.wait(10):
            sys.exit("could not subscribe to the broker")

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.setdefault(msg.topic.rsplit("/", 1)[1], []).append((json.loads(msg.payload), time.time()))

    def on(self, kind: str) -> list[tuple[dict, float]]:
        with self.lock:
            return list(self.messages.get(kind, []))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def belt_frames(parts: list[np.ndarray], n_frames: int, part_frames: int, gap_frames: int, lead: int):
    """JPEG frames of the belt and how many parts it shows: ``lead`` empty frames, then per part
    ``part_frames`` frames of it followed by ``gap_frames`` empty frames. The empty belt is the
    median border colour of the part images with mild fixed noise."""
    border = np.concatenate([np.concatenate([p[:8].reshape(-1, 3), p[-8:].reshape(-1, 3)]) for p in parts[:10]])
    h, w = parts[0].shape[:2]
    rng = np.random.default_rng(0)
    empty = np.clip(np.median(border, axis=0) + rng.normal(0, 2, (h, w, 3)), 0, 255).astype(np.uint8)
    empty_jpeg = encode_jpeg(empty)
    part_jpegs = [encode_jpeg(p) for p in parts]
    cycle = part_frames + gap_frames
    n_parts = (n_frames - lead) // cycle
    schedule: list[int] = [-1] * lead  # -1 = empty belt, else the index of the part image
    for k in range(n_parts):
        schedule += [k % len(parts)] * part_frames + [-1] * gap_frames
    schedule += [-1] * (n_frames - len(schedule))
    return (lambda i: empty_jpeg if schedule[i] < 0 else part_jpegs[schedule[i]]), n_parts, schedule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_mode_option(parser, "the product's mode (fused: regions carry defect kinds for the explanations)")
    add_input_option(parser)
    parser.add_argument("--category", default="bottle", choices=sorted(CATEGORIES), help="the parts on the belt")
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--fps", type=float, default=20.0)
    parser.add_argument("--part-frames", type=int, default=3, help="frames each part is in view (still)")
    parser.add_argument("--gap-frames", type=int, default=2, help="empty-belt frames between parts")
    parser.add_argument("--no-explain", action="store_true", help="run without explanations (for comparison)")
    parser.add_argument("--explain-variant", default="adapter", choices=["adapter", "facts", "template"],
                        help="adapter (the product default): the language model writes every FAIL's sentence "
                             "on the same 2 cores, the hardest case for verdict latency")
    add_threads_option(parser)
    parser.add_argument("--json", type=Path, default=RESULTS / "line_soak.json")
    args = parser.parse_args()
    config = with_input(InspectorConfig(mode=args.mode), args)
    header = run_header(args, config)
    cap_malloc_arenas()  # as `inspect-app line` does, before the model and the threads start
    set_threads(args.threads)
    category = MVTecCategory(category_dir(args.category))
    work = Path(tempfile.mkdtemp(prefix="line_soak_"))
    print(f"work folder {work}", flush=True)

    t0 = time.perf_counter()
    inspector = Inspector(config)
    inspector.fit(category.train_images(), product=args.category)
    inspector.save(work / "models")
    fit_s = time.perf_counter() - t0
    tests = [s.path for s in category.test_samples()]
    tests = [tests[i] for i in np.random.default_rng(0).permutation(len(tests))]  # good and defective mixed
    parts = [load_image(p) for p in tests]
    frame_at, n_parts, schedule = belt_frames(parts, args.frames, args.part_frames, args.gap_frames, lead=6)
    print(f"fitted {args.category} on {len(category.train_images())} good images in {fit_s:.1f} s; belt: {args.frames} "
          f"frames at {args.fps:g} fps showing {n_parts} parts ({len(tests)} test images in turn)", flush=True)

    broker = Mosquitto(work / "mosquitto", persistence=False).start()
    camera = MjpegCamera(frame_at, count=args.frames, fps=args.fps)
    collector = Collector(broker.port, "soak")
    store = ResultsStore(f"sqlite:///{work}/results.db", images_dir=work / "images")
    cfg = parse_station_config({
        "name": "soak", "product": args.category, "models_dir": str(work / "models"),
        "source": {"uri": camera.url, "read_timeout_s": 10},
        "trigger": {"mode": "part-present", "reference_frames": 4},
        "mqtt": {"host": "127.0.0.1", "port": broker.port},
        "explain": {"enabled": not args.no_explain, "variant": args.explain_variant},
        "pipeline": {"heartbeat_s": 2.0},
    })
    station = Station(cfg, inspector=inspector, store=store)
    station.start()
    rss = [(0.0, rss_mb())]
    camera.start()
    start = time.time()
    next_report = start + 10
    try:
        while not camera.done:
            time.sleep(0.5)
            if time.time() >= next_report:
                next_report += 10
                s = station.status()
                rss.append((time.time() - start, rss_mb()))
                print(f"{time.time() - start:5.0f} s: frames sent {camera.sent}/{args.frames}, triggered "
                      f"{s['triggered']}, stored {s['stored']}, published {s['mqtt']['published_results']}, "
                      f"queue {s['queues']['inspect']}, RSS {rss[-1][1]:.0f} MB", flush=True)
        time.sleep(2.0)  # the last part's frames reach the station
    finally:
        final = station.stop()
        camera.kill()
    rss.append((time.time() - start, rss_mb()))
    time.sleep(1.0)
    results = collector.on("result")
    explanations = collector.on("explanation")
    collector.close()
    broker.stop()

    ids = [m["id"] for m, _ in results]
    stored = store.count(station="soak")
    verdict_ms = {v: [m["trigger_to_verdict_ms"] for m, _ in results if m["verdict"] == v] for v in ("PASS", "FAIL")}
    all_ms = [m["trigger_to_verdict_ms"] for m, _ in results]
    delivered_ms = [(arrived - m["triggered_at"]) * 1000 for m, arrived in results]
    by_id = {m["id"]: (m, arrived) for m, arrived in results}
    order = [(e["explained_at"] - by_id[e["id"]][0]["published_at"]) * 1000
             for e, _ in explanations if e["id"] in by_id]
    sources: dict[str, int] = {}
    fallbacks: dict[str, int] = {}
    for e, _ in explanations:
        sources[e["source"]] = sources.get(e["source"], 0) + 1
        if e.get("fallback_reason"):
            reason = e["fallback_reason"].split(":")[0][:60]
            fallbacks[reason] = fallbacks.get(reason, 0) + 1
    expected_verdicts = {"FAIL": 0, "PASS": 0}
    for k in range(n_parts):
        expected_verdicts["PASS" if "/good/" in str(tests[k % len(tests)]) else "FAIL"] += 1
    out = {
        "frames_sent": camera.sent, "parts_shown": n_parts,
        "explanations": None if args.no_explain else args.explain_variant, "fit_seconds": round(fit_s, 1),
        "triggered": final["triggered"], "stored": stored,
        "published_results_acked": final["mqtt"]["published_results"],
        "result_messages_received": len(results), "distinct_result_ids": len(set(ids)),
        "duplicates": len(ids) - len(set(ids)),
        "counts": final["counts"], "expected_counts_from_labels": expected_verdicts,
        "dropped_frames": final["dropped_frames"], "corrupt_frames": final["corrupt_frames"],
        "rejected_parts": final["rejected_parts"], "unprocessed_at_shutdown": final["unprocessed_at_shutdown"],
        "camera_reconnects": final["camera"]["reconnects"],
        "trigger_to_verdict_ms": {"p50": pct(all_ms, 50), "p99": pct(all_ms, 99), "max": pct(all_ms, 100)},
        "trigger_to_verdict_ms_pass": {"p50": pct(verdict_ms["PASS"], 50), "p99": pct(verdict_ms["PASS"], 99)},
        "trigger_to_verdict_ms_fail": {"p50": pct(verdict_ms["FAIL"], 50), "p99": pct(verdict_ms["FAIL"], 99)},
        "trigger_to_mqtt_delivery_ms": {"p50": pct(delivered_ms, 50), "p99": pct(delivered_ms, 99)},
        "explanation_messages": len(explanations), "explanation_sources": sources, "explanation_fallbacks": fallbacks,
        "explanation_after_verdict_publish_ms": {"min": pct(order, 0), "p50": pct(order, 50), "max": pct(order, 100)},
        "explanations_before_verdict": sum(d < 0 for d in order),
        "rss_mb": {"start": round(rss[0][1]), "after_10s": round(rss[1][1]) if len(rss) > 2 else None,
                   "end": round(rss[-1][1]), "max": round(max(r for _, r in rss)),
                   "samples": [(round(t), round(r)) for t, r in rss]},
    }
    # Steady state: from the first sample after the station's first heap trim to the last sample
    # while running (the end figure is taken after stop, when queues and the model are released).
    running = [(t, r) for t, r in rss[1:-1] if t >= SETTLED_S]
    if len(running) >= 2:
        out["rss_mb"].update({"settled_at_s": round(running[0][0]), "settled": round(running[0][1]),
                              "last_running": round(running[-1][1]),
                              "max_after_settled": round(max(r for _, r in running)),
                              "growth_after_settled": round(running[-1][1] - running[0][1])})
    ok = n_parts == final["triggered"] == stored == len(set(ids)) == final["mqtt"]["published_results"]
    out["in_equals_stored_equals_published"] = ok
    rows = [
        ("parts shown (in)", n_parts), ("triggered", final["triggered"]), ("stored", stored),
        ("published (acked / received, distinct)", f"{final['mqtt']['published_results']} / {len(set(ids))}"),
        ("duplicates", out["duplicates"]), ("in = stored = published", ok),
        ("PASS / FAIL / ERROR", f"{final['counts']['PASS']} / {final['counts']['FAIL']} / {final['counts']['ERROR']}"
                                f" (labels: {expected_verdicts['PASS']} good / {expected_verdicts['FAIL']} defective)"),
        ("dropped / corrupt / rejected / unprocessed",
         f"{final['dropped_frames']} / {final['corrupt_frames']} / {final['rejected_parts']} / "
         f"{final['unprocessed_at_shutdown']}"),
        ("trigger-to-verdict p50 / p99 ms", _p50_p99(out["trigger_to_verdict_ms"])),
        ("  PASS parts p50 / p99 ms", _p50_p99(out["trigger_to_verdict_ms_pass"])),
        (f"  FAIL parts{' (explained)' if not args.no_explain else ''} p50 / p99 ms",
         _p50_p99(out["trigger_to_verdict_ms_fail"])),
        ("trigger-to-MQTT-delivery p50 / p99 ms", f"{out['trigger_to_mqtt_delivery_ms']['p50']} / "
                                                  f"{out['trigger_to_mqtt_delivery_ms']['p99']}"),
        ("explanations (by source)", f"{len(explanations)} {sources}"),
        ("  template fallbacks (by reason)", fallbacks),
        ("explanation after verdict publish, min / p50 ms", f"{out['explanation_after_verdict_publish_ms']['min']} / "
                                                            f"{out['explanation_after_verdict_publish_ms']['p50']}"),
        ("RSS start / after 10 s / end MB", f"{out['rss_mb']['start']} / {out['rss_mb']['after_10s']} / "
                                            f"{out['rss_mb']['end']}"),
    ]
    if "settled" in out["rss_mb"]:
        m = out["rss_mb"]
        rows.append((f"RSS at {m['settled_at_s']} s / last running / max MB",
                     f"{m['settled']} / {m['last_running']} / {m['max_after_settled']} "
                     f"(growth {m['growth_after_settled']:+d})"))
    width = max(len(k) for k, _ in rows)
    print()
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    write_json(args.json, header, out)
    store.close()


if __name__ == "__main__":
    main()
