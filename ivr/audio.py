"""Telephone audio for prompts: read and write 8 kHz 16-bit mono WAV, resample, trim, level.

Used by `ivr/make_prompts.py` and `ivr/names.py` to turn espeak-ng output (22050 Hz) into what
the switch plays (8000 Hz, so pjsua2 never resamples a G.711 call). numpy only: no sox needed.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ivr.errors import IvrError

__all__ = [
    "TELEPHONE_RATE",
    "Clip",
    "BadWav",
    "TtsUnavailable",
    "read_wav",
    "write_wav",
    "encode_wav",
    "resample",
    "trim_silence",
    "shorten_pauses",
    "level",
    "for_telephone",
    "speak",
]

TELEPHONE_RATE = 8000
SILENCE_THRESHOLD = 0.02  # of full scale: quieter than this at the ends is trimmed
EDGE_PAD_SECONDS = 0.06  # kept on each side so words are not clipped
PAUSE_SECONDS_MAX = 0.25  # espeak's pauses between sentences, shortened to this
PEAK_LEVEL = 0.7  # of full scale: headroom for the G.711 encoder
TTS_TIMEOUT_SECONDS = 30


class BadWav(IvrError, ValueError):
    """A WAV file that is not what the switch plays; the message names the file and the problem."""


class TtsUnavailable(IvrError):
    """espeak-ng is not installed here (fresh machines use the committed prompts instead)."""


@dataclass(frozen=True)
class Clip:
    rate: int
    samples: np.ndarray  # int16, mono

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


def _decode(data: bytes, where: str) -> Clip:
    try:
        with wave.open(io.BytesIO(data)) as w:
            if w.getnchannels() != 1 or w.getsampwidth() != 2 or w.getcomptype() != "NONE":
                raise BadWav(
                    f"{where}: want 16-bit mono PCM, got {w.getnchannels()} channel(s) "
                    f"of {8 * w.getsampwidth()} bits ({w.getcomptype()})"
                )
            rate = w.getframerate()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as e:
        raise BadWav(f"{where}: not a WAV file: {e}") from None
    return Clip(rate, np.frombuffer(frames, dtype="<i2").astype(np.int16))


def read_wav(path: str | Path) -> Clip:
    """A 16-bit mono PCM WAV file; anything else is BadWav naming the file."""
    return _decode(Path(path).read_bytes(), str(path))


def encode_wav(clip: Clip) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(clip.rate)
        w.writeframes(clip.samples.astype("<i2").tobytes())
    return buf.getvalue()


def write_wav(path: str | Path, clip: Clip) -> None:
    """Write atomically (a temporary file renamed), so a player never sees half a prompt."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(encode_wav(clip))
    tmp.replace(path)


def resample(clip: Clip, rate: int) -> Clip:
    """Band-limited resampling in the frequency domain (exact for a clip padded with silence)."""
    if clip.rate == rate or len(clip.samples) == 0:
        return Clip(rate, clip.samples.copy())
    x = clip.samples.astype(np.float64)
    n_out = max(1, round(len(x) * rate / clip.rate))
    spectrum = np.fft.rfft(x)
    keep = n_out // 2 + 1
    if keep <= len(spectrum):
        spectrum = spectrum[:keep]  # drops everything above the new Nyquist: no aliasing
    else:
        spectrum = np.concatenate([spectrum, np.zeros(keep - len(spectrum), complex)])
    y = np.fft.irfft(spectrum, n_out) * (n_out / len(x))
    return Clip(rate, np.clip(np.round(y), -32768, 32767).astype(np.int16))


def trim_silence(
    clip: Clip, threshold: float = SILENCE_THRESHOLD, pad_seconds: float = EDGE_PAD_SECONDS
) -> Clip:
    """Cut leading and trailing silence, keeping a short pad so playlists do not run words on."""
    loud = np.flatnonzero(np.abs(clip.samples.astype(np.int32)) > threshold * 32767)
    if len(loud) == 0:
        return Clip(clip.rate, clip.samples[:0].copy())
    pad = int(pad_seconds * clip.rate)
    start, end = max(0, loud[0] - pad), min(len(clip.samples), loud[-1] + 1 + pad)
    return Clip(clip.rate, clip.samples[start:end].copy())


def shorten_pauses(
    clip: Clip, threshold: float = SILENCE_THRESHOLD, pause_seconds_max: float = PAUSE_SECONDS_MAX
) -> Clip:
    """Cap every quiet stretch inside the clip at `pause_seconds_max` (smaller files, brisker
    IVR)."""
    quiet = np.abs(clip.samples.astype(np.int32)) <= threshold * 32767
    keep = np.ones(len(quiet), dtype=bool)
    cap = int(pause_seconds_max * clip.rate)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]])))
    for start, end in zip(edges[::2], edges[1::2], strict=False):
        if end - start > cap:  # keep both ends of the pause, drop its middle
            keep[start + cap // 2 : end - cap // 2] = False
    return Clip(clip.rate, clip.samples[keep].copy())


def level(clip: Clip, peak: float = PEAK_LEVEL) -> Clip:
    """Scale so the loudest sample sits at `peak` of full scale: every prompt equally loud."""
    top = int(np.max(np.abs(clip.samples.astype(np.int32)), initial=0))
    if top == 0:
        return clip
    y = clip.samples.astype(np.float64) * (peak * 32767 / top)
    return Clip(clip.rate, np.clip(np.round(y), -32768, 32767).astype(np.int16))


def for_telephone(clip: Clip) -> Clip:
    """Trim, resample to 8 kHz and level: what every generated prompt goes through."""
    return level(shorten_pauses(trim_silence(resample(trim_silence(clip), TELEPHONE_RATE))))


def speak(text: str, voice: str, *, speed_wpm: int = 150, espeak: str | None = None) -> Clip:
    """Synthesize `text` with espeak-ng (raw text on stdin: never parsed as options or SSML)."""
    exe = espeak or shutil.which("espeak-ng")
    if not exe:
        raise TtsUnavailable("espeak-ng is not installed (apt-get install -y espeak-ng)")
    try:
        done = subprocess.run(
            [exe, "-v", voice, "-s", str(speed_wpm), "--stdout"],
            input=text.encode("utf-8"),
            capture_output=True,
            check=True,
            timeout=TTS_TIMEOUT_SECONDS,
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise TtsUnavailable(f"espeak-ng failed for voice {voice!r}: {e}") from None
    return _decode(done.stdout, f"espeak-ng -v {voice}")
