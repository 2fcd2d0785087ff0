"""The web playground in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium):
search by upload, text and a dragged region, "more like this" and feedback, and the tagging page. Screenshots
of each page go to reports/playground/*.png."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.integration.gateway_support import near_duplicate, serve_gateway, with_text

pytestmark = [pytest.mark.models, pytest.mark.milvus_lite]
SHOTS = Path(__file__).resolve().parents[2] / "reports" / "playground"
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def base_url(photo_platform):
    with serve_gateway(photo_platform) as server:
        yield f"http://127.0.0.1:{server.port}"


@pytest.fixture(scope="module")
def browser():
    missing = [p for p in (CHROMIUM, DRIVER) if not shutil.which(p)]
    assert not missing, (
        f"{missing} missing: apt-get install chromium chromium-driver (deploy/local/install-system-packages.sh)"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)  # never downloads a browser
    driver.set_page_load_timeout(60)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def wait(browser, condition, timeout=120):
    return WebDriverWait(browser, timeout).until(condition)


def hits(browser):
    return browser.find_elements(By.CSS_SELECTOR, "#results .hit")


def status_says(text):
    return lambda b: text in b.find_element(By.ID, "status").text


def test_upload_shows_the_near_duplicate_first_with_a_thumbnail(browser, base_url, by_id_file):
    browser.get(base_url + "/playground/")
    browser.find_element(By.ID, "file").send_keys(str(by_id_file("photo-dog", near_duplicate)))
    browser.find_element(By.ID, "search").click()
    wait(browser, status_says("hits for image"))
    first = hits(browser)[0]
    assert first.get_attribute("data-image-id") == "photo-dog"
    thumb = first.find_element(By.CSS_SELECTOR, "img.thumb")
    wait(browser, lambda b: b.execute_script("return arguments[0].complete && arguments[0].naturalWidth", thumb) > 0)
    assert first.find_elements(By.CSS_SELECTOR, ".bar[data-factor='visual'] .fill")
    browser.save_screenshot(str(SHOTS / "search-upload.png"))

    first.find_element(By.CSS_SELECTOR, "img.thumb").click()  # a click on a hit is recorded as feedback
    wait(browser, status_says("recorded (1 accepted)"))
    hits(browser)[0].find_element(By.CSS_SELECTOR, "button.more").click()
    wait(browser, status_says("hits for more like photo-dog"))
    assert "photo-dog" not in [h.get_attribute("data-image-id") for h in hits(browser)]


def test_text_query(browser, base_url):
    browser.get(base_url + "/playground/")
    browser.find_element(By.CSS_SELECTOR, ".tabs button[data-pane='text']").click()
    browser.find_element(By.ID, "text").send_keys("a cup of coffee")
    browser.find_element(By.ID, "search").click()
    wait(browser, status_says('hits for text "a cup of coffee"'))
    assert hits(browser)[0].get_attribute("data-image-id") == "photo-coffee"
    browser.save_screenshot(str(SHOTS / "search-text.png"))


def test_drawn_region_searches_that_box(browser, base_url, by_id_file):
    browser.get(base_url + "/playground/")
    browser.find_element(By.ID, "file").send_keys(str(by_id_file("photo-dog", None)))
    img = browser.find_element(By.ID, "query-img")
    wait(browser, lambda b: b.execute_script("return arguments[0].naturalWidth", img) > 0)
    width, height = img.size["width"], img.size["height"]
    # drag from the top-left of the bicycle to its bottom-right (photo-dog: bicycle ~ 115,134 - 562,475 of 768x576)
    start = (int(width * 0.15) - width // 2, int(height * 0.23) - height // 2)
    ActionChains(browser).move_to_element_with_offset(img, *start).click_and_hold().move_by_offset(
        int(width * 0.58), int(height * 0.59)
    ).release().perform()
    region = wait(browser, lambda b: b.find_elements(By.ID, "region-box"))
    assert region and "region" in browser.find_element(By.ID, "region-info").text
    x1, y1, x2, y2 = (int(v) for v in re.findall(r"\d+", browser.find_element(By.ID, "region-info").text))
    assert 90 < x1 < 140 and 110 < y1 < 160 and x2 > 500 and y2 > 430
    browser.find_element(By.ID, "search").click()
    wait(browser, status_says("hits for image"))
    assert "(region)" in browser.find_element(By.ID, "status").text and hits(browser)
    browser.save_screenshot(str(SHOTS / "search-region.png"))


def test_tagging_page_shows_boxes_and_ocr_text(browser, base_url, by_id_file):
    browser.get(base_url + "/playground/tag.html")
    browser.find_element(By.ID, "file").send_keys(str(by_id_file("photo-coffee", with_text)))
    browser.find_element(By.ID, "recognize").click()
    wait(browser, status_says("done"))
    assert browser.find_elements(By.CSS_SELECTOR, "#box-layer .box.object")
    assert browser.find_elements(By.CSS_SELECTOR, "#box-layer .box.text")
    assert "ESPRESSO" in browser.find_element(By.ID, "ocr-text").text.upper()
    assert "›" in browser.find_element(By.ID, "taxonomy").text
    quality = {
        r.get_attribute("data-attribute") for r in browser.find_elements(By.CSS_SELECTOR, "#quality tr[data-attribute]")
    }
    assert {"blur", "mosaic", "model", "detail"} <= quality
    assert "safe" in browser.find_element(By.ID, "moderation").text
    wait(browser, ec.visibility_of_element_located((By.ID, "image-wrap")))
    browser.save_screenshot(str(SHOTS / "tag.png"))


@pytest.fixture(scope="module")
def by_id_file(photos, tmp_path_factory):
    folder = tmp_path_factory.mktemp("playground")
    items = {p.image_id: p for p in photos}

    def write(image_id, transform):
        data = items[image_id].read_bytes()
        path = folder / f"{image_id}-{transform.__name__ if transform else 'original'}.jpg"
        path.write_bytes(transform(data) if transform else data)
        return path

    return write
