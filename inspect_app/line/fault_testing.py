"""Fault injection for the line station, shared by the fault tests and ``benchmarks/line_faults.py``:
a station run as its own process from a YAML file (so it can be ``kill -9``-ed and restarted with
the same command), a QoS 1 consumer that collects result ids, a TCP proxy that takes a
PostgreSQL server away and gives it back, and a held SQLite write lock. Loopback only."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml

from inspect_app.line.testing import free_port


def write_station_config(path: Path, *, name: str, product: str, folder: Path, store_url: str, models_dir: Path,
                         mqtt_port: int | None = None, explain: bool = False, **extra: Any) -> Path:
    """A station YAML for a watched ``folder`` with ``done/`` and the spool beside it."""
    data: dict[str, Any] = {
        "name": name, "product": product, "models_dir": str(models_dir),
        "source": {"uri": str(folder), "kind": "folder", "done_dir": str(folder.parent / "done"), "settle_s": 0.05,
                   "poll_s": 0.02, "incomplete_s": 2.0},
        "store": {"url": store_url, "spool": str(folder.parent / "spool.db"),
                  "images_dir": str(folder.parent / "images")},
        "pipeline": {"heartbeat_s": 0.5}, "explain": {"enabled": explain}}
    if mqtt_port is not None:
        data["mqtt"] = {"host": "127.0.0.1", "port": mqtt_port}
    for key, value in extra.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    path.write_text(yaml.safe_dump(data))
    return path


class StationProcess:
    """``python -m inspect_app line --config FILE [--drain]`` with the code base this module is in."""

    def __init__(self, config: Path, log: Path, drain: bool = True, env: dict[str, str] | None = None):
        self.argv = [sys.executable, "-m", "inspect_app", "line", "--config", str(config)] + (["--drain"] * drain)
        self.log = log
        root = str(Path(__file__).resolve().parents[2])
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {}),
                    "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        self.process: subprocess.Popen | None = None

    def start(self) -> StationProcess:
        with self.log.open("a") as out:
            self.process = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                            cwd=self.log.parent, start_new_session=True)
        return self

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def sigterm(self, timeout: float = 60.0) -> float:
        """Seconds from SIGTERM to exit."""
        assert self.process is not None
        start = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout)
        return time.monotonic() - start

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def final(self) -> dict[str, Any] | None:
        """The final accounting line of the last run that printed one."""
        lines = [ln for ln in self.log.read_text(errors="replace").splitlines() if ln.startswith('{"final"')]
        return json.loads(lines[-1])["final"] if lines else None


class ResultCollector:
    """A persistent-session QoS 1 consumer of ``inspect/<station>/result``: counts each id received
    (a QoS 1 redelivery or a republication after a crash arrives again with the same id)."""

    def __init__(self, port: int, station: str):
        self.ids: Counter[int | None] = Counter()
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"collector-{uuid.uuid4().hex[:8]}",
                                  clean_session=False)
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"inspect/{station}/result", qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("the collector could not subscribe")

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.ids[json.loads(msg.payload).get("id")] += 1

    def received(self) -> Counter[int | None]:
        with self._lock:
            return Counter(self.ids)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target``; ``cut()`` drops every connection and refuses new
    ones (a database server gone), ``restore()`` forwards again."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = free_port()
        self.up = True
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self.up = False
        with self._lock:
            conns, self._conns = self._conns, set()
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.cut()
        self._server.close()


def hold_sqlite_lock(path: Path, seconds: float) -> threading.Thread:
    """Another process's long write transaction on a SQLite file: every writer waits, then fails."""

    def hold() -> None:
        connection = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        connection.execute("BEGIN EXCLUSIVE")
        time.sleep(seconds)
        connection.execute("ROLLBACK")
        connection.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    return thread
