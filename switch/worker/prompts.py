"""Where a prompt's audio is: the IVR catalog's WAV when it has one, else a short tone.

The tone stands in for prompts the catalog does not (yet) hold, so calls flow end to end without
recorded audio; each prompt id gets its own pitch so a listener (or a test) can tell them apart.
"""
from __future__ import annotations

import array
import hashlib
import math
import wave
from pathlib import Path

__all__ = ["Prompts", "write_tone", "TONE_SECONDS"]

TONE_SECONDS = 0.4
TONE_HZ_MIN, TONE_HZ_SPAN = 300, 1200


def write_tone(path: str | Path, freq_hz: float, seconds: float, *, rate: int = 8000,
               amplitude: int = 8000) -> str:
    """A mono 16-bit WAV holding a sine tone."""
    n = int(rate * seconds)
    samples = array.array("h", (int(amplitude * math.sin(2 * math.pi * freq_hz * i / rate))
                                for i in range(n)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return str(path)


def _catalog_path(prompt_id: str, language: str) -> str | None:
    try:
        from ivr import catalog
        p = Path(catalog.path(prompt_id, language))
    except Exception:          # no catalog yet, or it does not know this prompt
        return None
    return str(p) if p.is_file() else None


class Prompts:
    def __init__(self, tone_dir: str | Path, *, default_language: str = "en"):
        self.tone_dir = Path(tone_dir)
        self.default_language = default_language
        self._cache: dict[tuple[str, str], str] = {}

    def path(self, prompt_id: str, language: str | None = None) -> str:
        """The WAV to play for `prompt_id` in `language`; a file path is played as it is."""
        if prompt_id.startswith("/") and Path(prompt_id).is_file():
            return prompt_id
        lang = language or self.default_language
        key = (prompt_id, lang)
        hit = self._cache.get(key)
        if hit is None:
            hit = _catalog_path(prompt_id, lang) or self._tone(prompt_id)
            self._cache[key] = hit
        return hit

    def _tone(self, prompt_id: str) -> str:
        self.tone_dir.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in prompt_id)[:64]
        path = self.tone_dir / f"{safe}.wav"
        if not path.is_file():
            h = int.from_bytes(hashlib.sha1(prompt_id.encode()).digest()[:4], "big")
            write_tone(path, TONE_HZ_MIN + h % TONE_HZ_SPAN, TONE_SECONDS)
        return str(path)
