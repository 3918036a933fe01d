"""End to end in a real browser: ``inspect-app ui`` served on 127.0.0.1, headless Chromium
uploads a real defective bottle image on the Inspect page and must see FAIL, with the verdict and
the part's image inside a 1440x900 viewport; screenshot in artifacts/ui/."""

from __future__ import annotations

import time

import pytest
from PIL import Image
from ui_browser_support import body_text, chromium, in_viewport, serve_ui, shot, wait_for

from conftest import ImageFactory

pytestmark = [pytest.mark.slow, pytest.mark.browser]


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


def test_browser_upload_of_a_defective_part_shows_fail(tmp_path, models_dir, product):
    from selenium.webdriver.common.by import By

    name, defect = product
    store_url = f"sqlite:///{tmp_path / 'store' / 'results.db'}"
    with serve_ui(tmp_path, models_dir, store_url, "--operator-no-login") as base, chromium(1440, 900) as driver:
        start = time.perf_counter()
        driver.get(base)  # the first page the server serves (a deep link first shows "Page not found")
        wait_for(driver, lambda d: "Run screen" in body_text(d), what="the app")
        driver.get(base + "inspect")
        upload = wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, "input[type=file]"), what="the uploader")
        wait_for(driver, lambda d: name in body_text(d), what="the product")
        page_s = time.perf_counter() - start
        start = time.perf_counter()
        upload.send_keys(str(defect))
        banner = wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, ".verdict"), what="the verdict")
        print(f"\nbrowser: page ready in {page_s:.1f} s; upload of {defect.name} to visible verdict "
              f"{time.perf_counter() - start:.2f} s (includes the first model load)")
        assert banner.text.split()[1] == "FAIL"  # after its shape
        assert "score" in banner.text and "threshold 0.50" in banner.text
        wait_for(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid=stImage] img")) >= 2,
                 what="the image and its overlay")
        wait_for(driver, lambda d: "explanation: template" in body_text(d), what="the explanation")
        time.sleep(1.0)  # let the images finish painting for the screenshot
        shot(driver, "inspect_fail")
        assert in_viewport(driver, ".verdict")["inside"]
        image = in_viewport(driver, "[data-testid=stImage] img")
        assert 0 <= image["top"] < image["vh"], f"the part's image starts below the fold: {image}"
