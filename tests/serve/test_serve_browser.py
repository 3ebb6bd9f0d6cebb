"""The chat page in a real browser: headless Chromium (Debian's chromium + chromium-driver) through
Selenium loads the page, attaches an image with the file input, sends a message and sees the
streamed answer with its timings. In CI (CI=true) a missing browser fails the test.

The screenshot goes to $EDGE_SERVE_SCREENSHOT when set (docs/serve.png was made that way),
else into the test's temporary directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from serve_support import Server, chromium


@pytest.fixture(scope="module")
def browser():
    drv = chromium()
    yield drv
    drv.quit()


def test_page_streams_an_answer_about_an_attached_image(browser, tiny_llava_bundle, photo, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    srv = Server([str(tiny_llava_bundle)], tmp_path)
    try:
        browser.get(srv.url + "/")
        wait = WebDriverWait(browser, 120)
        wait.until(lambda d: d.find_element(By.ID, "model").text == srv.model)
        tokens = browser.find_element(By.ID, "max-tokens")
        tokens.clear()
        tokens.send_keys("24")
        browser.find_element(By.ID, "file").send_keys(str(photo))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#attachments img"))
        browser.find_element(By.ID, "prompt").send_keys("What is in this picture?")
        browser.find_element(By.ID, "send").click()
        done = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".msg.assistant[data-done='1']"))
        answer = done[-1].find_element(By.CSS_SELECTOR, ".answer").text
        timings = done[-1].find_element(By.CSS_SELECTOR, ".timings").text
        assert answer.strip(), browser.page_source
        assert "TTFT" in timings and "image tokens" in timings
        assert browser.find_elements(By.CSS_SELECTOR, ".msg.user img")
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        shot = Path(os.environ.get("EDGE_SERVE_SCREENSHOT") or tmp_path / "serve.png")
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 1000
    finally:
        assert srv.stop() == 0
