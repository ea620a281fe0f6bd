"""Which digits a recording says, found by matching the digit prompts against it.

The switch says a code with the catalog's digit WAVs (``ivr/prompts/<lang>/num_<d>.wav``); what a
called party records is those samples after G.711 and RTP. A matched filter finds them: the
normalized cross-correlation of each digit's prompt with the recording (numpy FFTs) peaks near 1
where that digit was said and stays low elsewhere (other words, other digits, silence). The
strongest non-overlapping peaks above `THRESHOLD`, in time order, are the digits heard.
"""
from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from ivr import catalog

__all__ = ["read_wav", "digit_templates", "spoken_digits", "THRESHOLD"]

THRESHOLD = 0.8      # a digit said scores ~0.99 after G.711; other words stay under ~0.65


def read_wav(path: str | Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1, f"{path}: 16-bit mono expected"
        assert w.getframerate() == 8000, f"{path}: 8 kHz expected, got {w.getframerate()}"
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)


def digit_templates(language: str) -> dict[str, np.ndarray]:
    return {d: read_wav(catalog.path(f"num_{d}", language)) for d in "0123456789"}


def _ncc(signal: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Normalized cross-correlation of `template` at every offset of `signal` (valid part)."""
    t = template - template.mean()
    t /= np.linalg.norm(t) or 1.0
    n, m = len(signal), len(t)
    if n < m:
        return np.zeros(0)
    size = 1 << (n + m - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(signal, size) * np.conj(np.fft.rfft(t, size)), size)[:n - m + 1]
    # Each window's energy, zero-meaned: sum(x^2) - (sum x)^2 / m.
    c1 = np.concatenate(([0.0], np.cumsum(signal)))
    c2 = np.concatenate(([0.0], np.cumsum(signal * signal)))
    s1 = c1[m:] - c1[:-m]
    s2 = c2[m:] - c2[:-m]
    energy = np.sqrt(np.maximum(s2 - s1 * s1 / m, 1e-9))
    return corr / energy


def spoken_digits(recording: np.ndarray, templates: dict[str, np.ndarray],
                  threshold: float = THRESHOLD) -> str:
    """The digits said in `recording`, in order."""
    candidates: list[tuple[float, int, str, int]] = []
    for digit, t in templates.items():
        score = _ncc(recording, t)
        if not len(score):
            continue
        above = np.flatnonzero(score > threshold)
        for k in above:
            candidates.append((float(score[k]), int(k), digit, len(t)))
    taken: list[tuple[int, int, str]] = []
    for score, start, digit, length in sorted(candidates, reverse=True):
        end = start + length
        # A detection owns its span: weaker peaks that overlap it are the same sound.
        if all(end <= s or start >= e for s, e, _ in taken):
            taken.append((start, end, digit))
    return "".join(d for _, _, d in sorted(taken))
