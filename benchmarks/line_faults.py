"""Faults on the line, counted: nothing lost, nothing twice, fast shutdown, only the right clients.

A product fitted in ``--mode`` on a category's train/good (bottle by default). Three parts:

1. **Exactly once.** The category's test images, repeated to ``--frames`` files, in a watched
   folder; ``inspect-app line --config ... --drain`` as its own process (SQLite store, the real
   Mosquitto broker, ``done/``, spool), with ``--kills`` ``kill -9`` + restarts of the same
   command, ``--db-outages`` database outages (a SQLite write lock held past the store's 10 s
   busy timeout) and ``--broker-outages`` broker restarts at random points. Counts files in,
   rows stored, distinct frame identities, result ids received by a QoS 1 consumer.
2. **SIGTERM.** ``--sigterm-runs`` runs with explanations on (the default variant): SIGTERM once
   ``--sigterm-after`` results are stored, seconds to exit (p50/p95/max) and the accounting.
3. **API.** ``inspect-app api`` with tokens: anonymous requests on every route (share refused),
   then ``--api-clients`` clients with a station token posting ``--api-requests`` images in all.

    flock /work/bench/heavy.lock .venv/bin/python benchmarks/line_faults.py --mode image-image [--frames 2000]
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from inspect_app.config import InspectorConfig
from inspect_app.data.mvtec import MVTecCategory
from inspect_app.inspector import Inspector
from inspect_app.line.fault_testing import ResultCollector, StationProcess, hold_sqlite_lock, write_station_config
from inspect_app.line.testing import Mosquitto, free_port
from inspect_app.store import ResultsStore

from common import (
    CATEGORIES,
    RESULTS,
    add_mode_option,
    add_threads_option,
    category_dir,
    run_header,
    set_threads,
    write_json,
)

DB_OUTAGE_S = 12.0  # > the store's 10 s SQLite busy timeout: writes fail, results go to the spool
BROKER_OUTAGE_S = 3.0


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


def wait_for(condition, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False


def fill_folder(folder: Path, sources: list[Path], n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        src = sources[i % len(sources)]
        shutil.copyfile(src, folder / f"{i:05d}_{src.parent.name}_{src.name}")


def exactly_once(args: argparse.Namespace, work: Path, models: Path, tests: list[Path]) -> dict:
    run = work / "exactly_once"
    folder = run / "drop"
    fill_folder(folder, tests, args.frames)
    db = run / "results.db"
    broker = Mosquitto(run / "mosquitto").start()
    collector = ResultCollector(broker.port, "faults")
    config = write_station_config(run / "station.yaml", name="faults", product=args.category, folder=folder,
                                  store_url=f"sqlite:///{db}", models_dir=models, mqtt_port=broker.port)
    store = ResultsStore(f"sqlite:///{db}")
    rng = random.Random(args.seed)
    events = sorted([(rng.randint(args.frames // 20, args.frames * 19 // 20), kind)
                     for kind, n in (("kill", args.kills), ("db", args.db_outages), ("broker", args.broker_outages))
                     for _ in range(n)])
    process = StationProcess(config, run / "station.log", env={"OMP_NUM_THREADS": str(args.threads)})
    start = time.monotonic()
    process.start()
    done: list[dict] = []
    try:
        for at, kind in events:
            wait_for(lambda a=at: store.count(station="faults") >= a or process.process.poll() is not None, 1800)
            stored = store.count(station="faults")
            if kind == "kill":
                process.kill9()
                process.start()
            elif kind == "db":
                hold_sqlite_lock(db, DB_OUTAGE_S).join()
            else:
                broker.restart(down_s=BROKER_OUTAGE_S)
            done.append({"kind": kind, "planned_at": at, "at_stored": stored})
            print(f"{time.monotonic() - start:6.0f} s: {kind} at {stored} stored", flush=True)
        exit_code = process.wait(3600)
        wall_s = time.monotonic() - start
        rows = store.query(station="faults", limit=10 * args.frames)
        stored_ids = {r.id for r in rows}
        wait_for(lambda: stored_ids <= set(collector.received()), 60)
        received = collector.received()
    finally:
        collector.close()
        broker.stop()
        store.close()
    keys = [r.frame_key for r in rows]
    distinct = len(set(keys))
    done_files = len(list((run / "done").iterdir())) if (run / "done").exists() else 0
    final = process.final() or {}
    return {
        "frames_in": args.frames, "rows_stored": len(rows), "distinct_frames_stored": distinct,
        "lost": args.frames - distinct, "stored_twice": len(rows) - distinct,
        "files_left_in_folder": len(list(folder.iterdir())), "files_in_done": done_files,
        "result_ids_received_distinct": len(set(received) - {None}),
        "result_ids_missing_on_mqtt": len(stored_ids - set(received)), "messages_with_null_id": received[None],
        "redeliveries_same_id": sum(received.values()) - len(received),
        "verdicts": {v: sum(r.verdict == v for r in rows) for v in ("PASS", "FAIL", "ERROR")},
        "events": done, "last_run_exit_code": exit_code, "last_run_final": {
            k: final.get(k) for k in ("results", "stored", "store", "files", "unprocessed_at_shutdown")},
        "wall_s": round(wall_s, 1),
    }


def sigterm_runs(args: argparse.Namespace, work: Path, models: Path, tests: list[Path]) -> dict:
    seconds, finals = [], []
    for k in range(args.sigterm_runs):
        run = work / f"sigterm_{k}"
        folder = run / "drop"
        fill_folder(folder, tests, 200)
        config = write_station_config(run / "station.yaml", name=f"term{k}", product=args.category, folder=folder,
                                      store_url=f"sqlite:///{run / 'results.db'}", models_dir=models, explain=True)
        process = StationProcess(config, run / "station.log", drain=False,
                                 env={"OMP_NUM_THREADS": str(args.threads)}).start()
        with ResultsStore(f"sqlite:///{run / 'results.db'}") as store:
            wait_for(lambda s=store, t=f"term{k}": s.count(station=t) >= args.sigterm_after, 600, 0.1)
            took = process.sigterm(60)
            final = process.final() or {}
            rows = store.count(station=f"term{k}")
        seconds.append(took)
        finals.append({"exit_s": round(took, 2), "results": final.get("results"), "stored_rows": rows,
                       "explanations": final.get("explanations"),
                       "unprocessed_at_shutdown": final.get("unprocessed_at_shutdown")})
        print(f"SIGTERM run {k}: exit after {took:.2f} s, {final.get('explanations')}", flush=True)
    return {"runs": finals, "exit_s": {"p50": pct(seconds, 50), "p95": pct(seconds, 95), "max": pct(seconds, 100)},
            "every_result_stored": all(f["results"] == f["stored_rows"] for f in finals)}


def api_load(args: argparse.Namespace, work: Path, models: Path, tests: list[Path]) -> dict:
    run = work / "api"
    run.mkdir()
    url = f"sqlite:///{run / 'results.db'}"
    with ResultsStore(url) as store:
        station_token = store.add_token("bench-station", "station")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (run / "api.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "inspect_app", "api", "--port", str(port), "--models-dir",
                               str(models), "--store", url], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _answers(f"{base}/health"), 300, 0.3)
        image = tests[0].read_bytes()
        anonymous = []
        for _ in range(10):
            for method, path in (("POST", "/inspect"), ("GET", "/results"), ("GET", "/results/1"),
                                 ("GET", "/metrics"), ("POST", "/trigger"), ("POST", "/frames"),
                                 ("GET", "/docs"), ("GET", "/openapi.json")):
                files = {"file": ("p.png", image, "image/png")} if method == "POST" else None
                anonymous.append(httpx.request(method, base + path, params={"product": args.category}, files=files,
                                               timeout=60).status_code)
        latencies: list[float] = []
        codes: list[int] = []
        lock = threading.Lock()
        per_client = args.api_requests // args.api_clients

        def client(c: int) -> None:
            with httpx.Client(headers={"Authorization": f"Bearer {station_token}"}, timeout=120) as http:
                for i in range(per_client):
                    data = tests[(c * per_client + i) % len(tests)].read_bytes()
                    t0 = time.perf_counter()
                    response = http.post(f"{base}/inspect", params={"product": args.category},
                                         files={"file": ("p.png", data, "image/png")})
                    with lock:
                        latencies.append(time.perf_counter() - t0)
                        codes.append(response.status_code)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client, args=(c,)) for c in range(args.api_clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    refused = sum(code >= 400 for code in anonymous)  # 401 on the API's routes, 404 for the docs (off)
    return {"anonymous_requests": len(anonymous), "anonymous_refused": refused,
            "anonymous_status_codes": {str(c): anonymous.count(c) for c in sorted(set(anonymous))},
            "clients": args.api_clients, "requests": len(codes), "ok": codes.count(200),
            "status_codes": {str(c): codes.count(c) for c in sorted(set(codes))},
            "latency_s": {"p50": pct(latencies, 50), "p95": pct(latencies, 95)},
            "requests_per_s": round(len(codes) / wall, 2), "wall_s": round(wall, 1)}


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code in (200, 503)
    except httpx.TransportError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_mode_option(parser)
    parser.add_argument("--category", default="bottle", choices=sorted(CATEGORIES))
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--db-outages", type=int, default=2)
    parser.add_argument("--broker-outages", type=int, default=2)
    parser.add_argument("--sigterm-runs", type=int, default=10)
    parser.add_argument("--sigterm-after", type=int, default=20, help="results stored before the SIGTERM")
    parser.add_argument("--api-clients", type=int, default=4)
    parser.add_argument("--api-requests", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    add_threads_option(parser)
    parser.add_argument("--json", type=Path, default=RESULTS / "line_faults.json")
    args = parser.parse_args()
    config = InspectorConfig(mode=args.mode)
    header = run_header(args, config)
    set_threads(args.threads)
    category = MVTecCategory(category_dir(args.category))
    work = Path(tempfile.mkdtemp(prefix="line_faults_"))
    print(f"work folder {work}", flush=True)
    t0 = time.perf_counter()
    inspector = Inspector(config)
    inspector.fit(category.train_images(), product=args.category)
    inspector.save(work / "models")
    fit_s = round(time.perf_counter() - t0, 1)
    tests = [s.path for s in category.test_samples()]
    print(f"fitted {args.category} in {fit_s} s; {len(tests)} test images", flush=True)
    del inspector
    figures = {"fit_seconds": fit_s, "test_images": len(tests),
               "exactly_once": exactly_once(args, work, work / "models", tests),
               "sigterm": sigterm_runs(args, work, work / "models", tests),
               "api": api_load(args, work, work / "models", tests)}
    e, s, a = figures["exactly_once"], figures["sigterm"], figures["api"]
    figures["targets_met"] = {
        "exactly_once": e["lost"] == 0 and e["stored_twice"] == 0 and e["result_ids_missing_on_mqtt"] == 0
        and e["messages_with_null_id"] == 0,
        "sigterm_p95_le_5s": s["exit_s"]["p95"] is not None and s["exit_s"]["p95"] <= 5.0,
        "anonymous_all_refused": a["anonymous_refused"] == a["anonymous_requests"],
    }
    for name, part in figures.items():
        print(f"{name}: {part}", flush=True)
    write_json(args.json, header, figures)


if __name__ == "__main__":
    main()
