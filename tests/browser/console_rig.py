"""What the console's browser tests share: operators' passwords, waits, screenshots."""
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
