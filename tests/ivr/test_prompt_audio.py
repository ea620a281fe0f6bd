import numpy as np
import pytest

from ivr import audio
from ivr.audio import BadWav, Clip


def _tone(freq, rate=22050, seconds=0.5, amp=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return Clip(rate, np.round(amp * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16))


def _peak_hz(clip):
    spectrum = np.abs(np.fft.rfft(clip.samples.astype(np.float64)))
    return np.argmax(spectrum) * clip.rate / len(clip.samples)


def test_resampling_to_8khz_keeps_a_voice_band_tone():
    out = audio.resample(_tone(440), 8000)
    assert out.rate == 8000 and len(out.samples) == 4000
    assert abs(_peak_hz(out) - 440) < 3


def test_resampling_removes_tones_above_4khz_instead_of_aliasing_them():
    out = audio.resample(_tone(5000), 8000)
    assert np.max(np.abs(out.samples)) < 0.01 * 32767   # 5 kHz would alias to 3 kHz


def test_trim_silence_keeps_only_a_short_pad_around_the_sound():
    silence = np.zeros(8000, np.int16)
    tone = _tone(440, rate=8000, seconds=0.25).samples
    clip = Clip(8000, np.concatenate([silence, tone, silence]))
    out = audio.trim_silence(clip)
    assert 0.25 <= out.seconds <= 0.25 + 2 * audio.EDGE_PAD_SECONDS + 0.01


def test_long_pauses_inside_a_prompt_are_shortened():
    tone = _tone(440, rate=8000, seconds=0.2).samples
    clip = Clip(8000, np.concatenate([tone, np.zeros(8000, np.int16), tone]))
    out = audio.shorten_pauses(clip)
    assert out.seconds == pytest.approx(0.4 + audio.PAUSE_SECONDS_MAX, abs=0.02)


def test_level_sets_the_peak():
    out = audio.level(_tone(440, amp=0.1))
    assert np.max(np.abs(out.samples)) == pytest.approx(audio.PEAK_LEVEL * 32767, abs=2)


def test_wav_round_trip(tmp_path):
    clip = _tone(300, rate=8000, seconds=0.1)
    audio.write_wav(tmp_path / "a.wav", clip)
    back = audio.read_wav(tmp_path / "a.wav")
    assert back.rate == 8000 and np.array_equal(back.samples, clip.samples)


def test_a_stereo_or_non_wav_file_is_refused_with_its_name(tmp_path):
    import wave
    with wave.open(str(tmp_path / "st.wav"), "wb") as w:
        w.setnchannels(2), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(b"\0" * 400)
    with pytest.raises(BadWav, match="st.wav: want 16-bit mono"):
        audio.read_wav(tmp_path / "st.wav")
    (tmp_path / "junk.wav").write_bytes(b"hello")
    with pytest.raises(BadWav, match="junk.wav: not a WAV"):
        audio.read_wav(tmp_path / "junk.wav")


def test_speaking_without_espeak_is_tts_unavailable(tmp_path):
    with pytest.raises(audio.TtsUnavailable):
        audio.speak("hello", "en-us", espeak=str(tmp_path / "no-espeak"))
