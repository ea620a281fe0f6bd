"""What the console's and the portal's browser tests share: operators' passwords, waits,
form submission, screenshots."""
from __future__ import annotations

from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "browser"
PAGE_WAIT_SECONDS = 10
PASSWORDS = {"ana": "ana-console-pass-1", "bill": "bill-console-pass-1",
             "audrey": "audrey-console-pass-1", "fran": "fran-console-pass-1"}
SHOTS: list[Path] = []


def shoot(driver, name: str) -> Path:
    """A screenshot kept as a test artifact (artifacts/browser/, ignored by git)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{len(SHOTS) + 1:02d}-{name}.png"
    driver.save_screenshot(str(path))
    SHOTS.append(path)
    return path


def wait_for(driver, css: str, *, gone: bool = False):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait
    w = WebDriverWait(driver, PAGE_WAIT_SECONDS)
    if gone:
        return w.until(ec.invisibility_of_element_located((By.CSS_SELECTOR, css)))
    return w.until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))


def css(driver, selector: str):
    from selenium.webdriver.common.by import By
    return driver.find_elements(By.CSS_SELECTOR, selector)


def submit(driver, button_css: str, wait_css: str):
    """Click a submit button (or a link) and wait for the next page (see `click_and_wait`)."""
    return click_and_wait(driver, css(driver, button_css)[0], wait_css)


def click_and_wait(driver, element, wait_css: str):
    """Click `element` and wait for the next page: the old page's root goes stale. This
    chromedriver sometimes reports a node of the unloaded page as "does not belong to the
    document" instead of stale; that is the same fact. Returns the next page's `wait_css`."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait
    old = css(driver, "html")[0]
    element.click()

    def unloaded(_):
        try:
            old.is_enabled()
            return False
        except StaleElementReferenceException:
            return True
        except WebDriverException as e:
            if "does not belong to the document" in str(e):
                return True
            raise
    WebDriverWait(driver, PAGE_WAIT_SECONDS).until(unloaded)
    return wait_for(driver, wait_css)
