"""A real headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven through
Selenium, for the console's browser tests, and the accessibility checks they run on every page.

Nothing is downloaded at run time: the browser and its driver are the Debian packages
(``scripts/test`` installs them), and Selenium is pointed at both, so its own driver manager is
never asked. Each driver gets a fresh profile directory and the flags that keep Chromium off
the network (no sync, no component updates, no QUIC).
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
)


def require_chromium() -> None:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Chromium is not installed (Debian packages chromium and chromium-driver)")


@contextmanager
def chromium(profile: Path, *, javascript: bool = True) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with a fresh profile in ``profile``; ``javascript=False`` turns
    script off for every page, as a person's browser may have it."""
    require_chromium()
    profile.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2}
        )
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@dataclass
class Screenshots:
    """Where the browser tests write a picture of every page they check."""

    directory: Path

    def take(self, driver: webdriver.Chrome, name: str) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{name}.png"
        height = driver.execute_script("return document.body.scrollHeight") if _js(driver) else 0
        if height:
            driver.set_window_size(1280, min(max(1000, int(height) + 40), 6000))
            driver.execute_script("window.scrollTo(0, 0)")
        assert driver.save_screenshot(str(path)), f"no screenshot of {name}"
        driver.set_window_size(1280, 1000)
        return path


def _js(driver: webdriver.Chrome) -> bool:
    try:
        return bool(driver.execute_script("return true"))
    except Exception:
        return False


# -- accessibility ---------------------------------------------------------------------------


def check_accessibility(driver: webdriver.Chrome, page: str) -> None:
    """The basic checks the issue asks for, on the page shown: one ``h1``, headings that never
    skip a level, the landmarks (``main``, and for a signed-in page a ``nav``), a label for
    every control, and a keyboard path: Tab from the top reaches the skip link first and then
    every control in document order, each showing a focus outline."""
    headings = driver.find_elements(By.CSS_SELECTOR, "h1, h2, h3, h4")
    levels = [int(h.tag_name[1]) for h in headings]
    assert levels.count(1) == 1, f"{page}: {levels.count(1)} h1 elements"
    assert levels[0] == 1, f"{page}: the first heading is h{levels[0]}"
    for before, after in itertools.pairwise(levels):
        assert after <= before + 1, f"{page}: a heading skips from h{before} to h{after}"
    assert driver.find_elements(By.CSS_SELECTOR, "main#main"), f"{page}: no main landmark"
    assert driver.find_elements(By.CSS_SELECTOR, "header"), f"{page}: no header landmark"
    for control in _controls(driver):
        assert _label_of(driver, control), (
            f"{page}: {control.get_attribute('outerHTML')} has no label"
        )
    _check_tab_order(driver, page)


def _controls(driver: webdriver.Chrome) -> list[WebElement]:
    found = driver.find_elements(By.CSS_SELECTOR, "input, select, textarea")
    return [c for c in found if c.get_attribute("type") != "hidden"]


def _label_of(driver: webdriver.Chrome, control: WebElement) -> str:
    ident = control.get_attribute("id")
    if ident:
        labels = driver.find_elements(By.CSS_SELECTOR, f'label[for="{ident}"]')
        if labels and labels[0].text.strip():
            return labels[0].text.strip()
    return (control.get_attribute("aria-label") or "").strip()


def _focusable(driver: webdriver.Chrome) -> list[WebElement]:
    found = driver.find_elements(
        By.CSS_SELECTOR, "a[href], button, input, select, textarea, summary"
    )
    return [
        e
        for e in found
        if e.get_attribute("type") != "hidden"
        and e.get_attribute("tabindex") != "-1"
        and (e.is_displayed() or e.get_attribute("class") == "skip")
    ]


def _check_tab_order(driver: webdriver.Chrome, page: str, limit: int = 40) -> None:
    expected = _focusable(driver)[:limit]
    driver.switch_to.active_element.send_keys(Keys.TAB)  # from the document's start
    reached: list[WebElement] = []
    for _ in expected:
        active = driver.switch_to.active_element
        reached.append(active)
        style = active.value_of_css_property("outline-style")
        assert style not in ("", "none"), (
            f"{page}: no visible focus on {(active.get_attribute('outerHTML') or '')[:120]}"
        )
        active.send_keys(Keys.TAB)
    assert reached[0].get_attribute("class") == "skip", (
        f"{page}: Tab does not reach the skip link first"
    )
    assert [e.id for e in reached] == [e.id for e in expected], (
        f"{page}: the Tab order is not the document order"
    )
