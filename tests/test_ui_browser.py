"""End to end in a real browser: ``inspect-app ui`` served on 127.0.0.1, headless Chromium
uploads a real defective bottle image and must see FAIL; a screenshot is kept in artifacts/."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from conftest import ImageFactory

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ARTIFACTS = ROOT / "artifacts"

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def product(tmp_path, models_dir, fitted_inspector):
    """(product name, defective image path): bottle fitted on 20 real good images when the shared
    dataset is present, else the synthetic 'gradient' product and a synthetic defect."""
    from inspect_app.config import InspectorConfig
    from inspect_app.data.datasets import shared_datasets
    from inspect_app.inspector import Inspector

    shared = shared_datasets()
    if shared is not None:
        bottle = shared / "mvtec_ad" / "bottle"
        defects = sorted((bottle / "test" / "broken_large").glob("*.png"))
        inspector = Inspector(InspectorConfig(mode="image-image"), product="bottle")  # the fastest fit
        inspector.fit(sorted((bottle / "train" / "good").glob("*.png"))[:20])
        inspector.save(models_dir)
        return "bottle", defects[0]
    fitted_inspector.save(models_dir)
    path = tmp_path / "defect.png"
    Image.fromarray(ImageFactory(seed=3).defective(64, 64, 14)).save(path)
    return "gradient", path


@pytest.fixture
def served_ui(tmp_path, models_dir, product):
    """``inspect-app ui`` in a subprocess on a free loopback port; always killed."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("chromium / chromedriver not installed")
    port = free_port()
    script = Path(sys.executable).with_name("inspect-app")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "inspect_app.cli"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "INSPECT_APP_UI_EXPLAINER_VARIANT": "template"}
    log = open(tmp_path / "ui.log", "wb")
    args = ["ui", "--port", str(port), "--host", "127.0.0.1", "--models-dir", str(models_dir),
            "--store", f"sqlite:///{tmp_path / 'store' / 'results.db'}", "--operator-no-login"]
    proc = subprocess.Popen(command + args,
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                output = (tmp_path / "ui.log").read_text()[-2000:]
                pytest.fail(f"inspect-app ui exited with {proc.returncode}: {output}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                    if response.read() == b"ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the station UI did not answer within 90 s")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log.close()


def test_browser_upload_of_a_defective_part_shows_fail(served_ui, product):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    name, defect = product
    profile_dir = tempfile.mkdtemp(prefix="chromium-ui-test-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile_dir}",
                 "--window-size=1400,1250"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        start = time.perf_counter()
        driver.get(served_ui)
        wait = WebDriverWait(driver, 90)
        upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "input[type=file]")))
        # the product is selected (Streamlit may paint the selectbox after the file input)
        wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), name))
        page_s = time.perf_counter() - start
        start = time.perf_counter()
        upload.send_keys(str(defect))
        banner = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".verdict")))
        print(f"\nbrowser: page ready in {page_s:.1f} s; upload of {defect.name} to visible verdict "
              f"{time.perf_counter() - start:.2f} s (includes the first model load)")
        assert banner.text.split()[0] == "FAIL"
        assert "score" in banner.text and "threshold 0.50" in banner.text
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid=stImage] img")) >= 2)
        wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "explanation: template"))
        time.sleep(1.0)  # let the images finish painting for the screenshot
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "ui_inspect_fail.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        driver.quit()
        shutil.rmtree(profile_dir, ignore_errors=True)
