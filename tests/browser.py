"""Open an HTML report in headless Chromium (Debian's `chromium` and `chromium-driver`) through Selenium.

Selenium is pointed at /usr/bin/chromedriver so selenium-manager never downloads a driver;
.ci/run installs both packages. Used by the report's browser test and the demo's.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--window-size=1280,1024")
PAGE_LOAD_TIMEOUT_S = 60


def missing_browser() -> str | None:
    """Why the browser cannot run here (None: it can)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(path):
            return f"{path} is missing: apt-get install -y chromium chromium-driver (.ci/run does it)"
    return None


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium WebDriver that keeps the browser console's log (goog:loggingPrefs browser ALL)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in CHROME_ARGS:
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
    try:
        yield driver
    finally:
        driver.quit()


def render_report(path: str | Path) -> dict[str, Any]:
    """Load a report page and say what the browser made of it.

    Returns {"title": str, "plots": {data-plot id: {"width", "height", "svg_elements"}},
    "missing_notes": [data-missing of each "no data yet" note], "console_errors": [SEVERE console lines]}.
    """
    from selenium.webdriver.common.by import By

    with chromium() as driver:
        driver.get(Path(path).resolve().as_uri())
        plots = {}
        for element in driver.find_elements(By.CSS_SELECTOR, "[data-plot]"):
            size = element.find_element(By.TAG_NAME, "svg").size
            drawn = len(element.find_elements(By.CSS_SELECTOR, "svg path, svg text"))
            plots[element.get_attribute("data-plot")] = {"width": size["width"], "height": size["height"], "svg_elements": drawn}
        notes = [e.get_attribute("data-missing") for e in driver.find_elements(By.CSS_SELECTOR, "[data-missing]")]
        errors = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        return {"title": driver.title, "plots": plots, "missing_notes": notes, "console_errors": errors}


def screenshot(path: str | Path, out: str | Path, *, width: int = 1280) -> Path:
    """A full-page PNG of an HTML file (the window is resized to the page's height first)."""
    with chromium() as driver:
        driver.get(Path(path).resolve().as_uri())
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(width, height)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
        return out
