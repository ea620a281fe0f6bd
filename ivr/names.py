"""Spoken names: an inmate's or a facility's name as a telephone WAV, generated once and cached.

Called at provision time (or by the worker before the announcement): `name_clip("Lakeside County
Jail", "en", data_dir)` returns the cached WAV path, generating it with espeak-ng the first time.
Where espeak-ng is missing (a fresh machine: the committed prompts need no TTS) or fails, it returns
the generic fallback given (e.g. ``"cp_a_correctional_facility"``) or None, and the announcement
reads "a prepaid call from an inmate at a correctional facility". A recorded name (``ics inmate
record-name``) always wins over a generated one; this module only makes the generated ones.

Cache: ``<data_dir>/prompts/names/<lang>/<sha256 of voice, speed and text>.wav``. Names are passed
to espeak-ng on stdin as plain text (never as options or SSML) and are cut to `NAME_CHARS_MAX`.
"""

from __future__ import annotations

import hashlib
import unicodedata
from pathlib import Path

from ivr import audio, catalog
from ivr.errors import IvrError

__all__ = ["NAME_CHARS_MAX", "NAME_SPEED_WPM", "BadName", "cache_path", "spoken_name", "name_clip"]

NAME_CHARS_MAX = 80
NAME_SPEED_WPM = 140  # names are the part people must catch: slower than the prompts


class BadName(IvrError, ValueError):
    """A name with nothing speakable in it; the message shows it."""


def _clean(text: str) -> str:
    if not isinstance(text, str):
        raise BadName(f"a name must be a string, got {text!r}")
    # control and format characters out, whitespace folded, length bounded
    kept = "".join(ch if unicodedata.category(ch)[0] not in "C" else " " for ch in text)
    kept = " ".join(kept.split())[:NAME_CHARS_MAX]
    if not any(ch.isalnum() for ch in kept):
        raise BadName(f"nothing speakable in name {text!r}")
    return kept


def cache_path(text: str, lang: str, data_dir: Path) -> Path:
    """Where the generated WAV of `text` in `lang` lives (whether or not it exists yet)."""
    catalog.check_language(lang)
    key = f"{catalog.VOICES[lang]}|{NAME_SPEED_WPM}|{_clean(text)}".encode()
    name = f"{hashlib.sha256(key).hexdigest()[:24]}.wav"
    return Path(data_dir) / "prompts" / "names" / lang / name


def spoken_name(text: str, lang: str, data_dir: Path, *, espeak: str | None = None) -> Path:
    """The WAV of `text` spoken in `lang`, generated on first use. Raises TtsUnavailable."""
    target = cache_path(text, lang, data_dir)
    if not target.exists():
        clip = audio.speak(
            _clean(text), catalog.VOICES[lang], speed_wpm=NAME_SPEED_WPM, espeak=espeak
        )
        clip = audio.for_telephone(clip)
        if len(clip.samples) == 0:
            raise audio.TtsUnavailable(f"espeak-ng produced silence for {text!r}")
        audio.write_wav(target, clip)
    return target


def name_clip(
    text: str | None,
    lang: str,
    data_dir: Path,
    fallback: str | None = None,
    *,
    espeak: str | None = None,
) -> catalog.Clip | None:
    """The generated name WAV, or `fallback` (a prompt id, or None) when it cannot be made."""
    if fallback is not None:
        catalog.path(fallback, lang)  # a typo in the fallback is a bug: fail now
    if not text:
        return fallback
    try:
        return spoken_name(text, lang, data_dir, espeak=espeak)
    except (BadName, audio.TtsUnavailable):
        return fallback
