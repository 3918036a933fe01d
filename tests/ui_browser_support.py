"""What the real-browser UI tests share: ``inspect-app ui`` served on a free loopback port,
headless Chromium at an exact viewport, and checks made from the page itself (is an element
inside the viewport?), with screenshots kept under artifacts/ui/."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from inspect_app.line.testing import free_port

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ARTIFACTS = ROOT / "artifacts" / "ui"
VIEWPORTS = ((1280, 800), (1440, 900), (1920, 1080))


def need_browser() -> None:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("chromium / chromedriver not installed")


@contextmanager
def serve_ui(workdir: Path, models_dir: Path, store_url: str, *extra: str, env: dict[str, str] | None = None
             ) -> Iterator[str]:
    """``inspect-app ui`` in a subprocess (this checkout's code); yields its base URL; always killed."""
    need_browser()
    port = free_port()
    command = [sys.executable, "-m", "inspect_app"]
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "INSPECT_APP_UI_EXPLAINER_VARIANT": "template", **(env or {})}
    log_path = workdir / f"ui-{port}.log"
    args = ["ui", "--port", str(port), "--host", "127.0.0.1", "--models-dir", str(models_dir), "--store", store_url,
            *extra]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command + args, cwd=workdir, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 90
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"inspect-app ui exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                        if response.read() == b"ok":
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail("the station UI did not answer within 90 s")
                time.sleep(0.3)
            yield f"http://127.0.0.1:{port}/"
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)


@contextmanager
def chromium(width: int = 1440, height: int = 900):
    """Headless Chromium whose viewport (not window) is exactly ``width`` x ``height``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    need_browser()
    profile_dir = tempfile.mkdtemp(prefix="chromium-ui-test-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile_dir}",
                 f"--window-size={width},{height}", "--hide-scrollbars"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        set_viewport(driver, width, height)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile_dir, ignore_errors=True)


def set_viewport(driver, width: int, height: int) -> None:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


def wait_for(driver, condition, timeout: float = 60.0, what: str = "the page"):
    from selenium.common.exceptions import (
        ElementNotInteractableException,
        NoSuchElementException,
        StaleElementReferenceException,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    try:  # the page reruns every second: an element found a moment ago may be replaced
        return WebDriverWait(driver, timeout, poll_frequency=0.2, ignored_exceptions=(
            NoSuchElementException, StaleElementReferenceException, ElementNotInteractableException)).until(condition)
    except Exception as exc:
        shot(driver, "failure")
        raise AssertionError(f"waiting {timeout} s for {what}: {type(exc).__name__}: {exc}") from None


def in_viewport(driver, css: str) -> dict:
    """The element's box and whether all of it lies inside the viewport (as the page reports it)."""
    return driver.execute_script("""
        const el = document.querySelector(arguments[0]);
        if (!el) return {found: false, inside: false};
        const r = el.getBoundingClientRect();
        return {found: true, top: r.top, left: r.left, bottom: r.bottom, right: r.right,
                width: r.width, height: r.height, vw: window.innerWidth, vh: window.innerHeight,
                inside: r.width > 0 && r.height > 0 && r.top >= 0 && r.left >= 0 &&
                        r.bottom <= window.innerHeight && r.right <= window.innerWidth};
    """, css)


def shot(driver, name: str) -> Path:
    """Screenshot as artifacts/ui/<name>_<width>x<height>.png (the viewport's size)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    size = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    path = ARTIFACTS / f"{name}_{size[0]}x{size[1]}.png"
    driver.save_screenshot(str(path))
    return path


def body_text(driver) -> str:
    return driver.execute_script("return document.body.innerText")
