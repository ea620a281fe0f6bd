import stat
import sys
import textwrap

import pytest

from ivr import audio, names
from ivr.names import BadName


@pytest.fixture
def fake_espeak(tmp_path):
    """A stand-in for espeak-ng: writes a 22 kHz tone as WAV and logs each call and its stdin."""
    log = tmp_path / "calls.log"
    exe = tmp_path / "fake-espeak"
    exe.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import io, sys, wave, math, struct
        text = sys.stdin.read()
        open({str(log)!r}, "a").write(repr(sys.argv[1:]) + " " + repr(text) + "\\n")
        frames = b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * 300 * i / 22050)))
                          for i in range(11025))
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1); w.setsampwidth(2); w.setframerate(22050); w.writeframes(frames)
        sys.stdout.buffer.write(buf.getvalue())
        """))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe, log


def test_a_name_is_generated_once_as_8khz_and_then_served_from_the_cache(tmp_path, fake_espeak):
    exe, log = fake_espeak
    first = names.name_clip("Lakeside County Jail", "en", tmp_path, espeak=str(exe))
    again = names.name_clip("Lakeside County Jail", "en", tmp_path, espeak=str(exe))
    assert first == again and first.is_relative_to(tmp_path / "prompts" / "names" / "en")
    clip = audio.read_wav(first)
    assert clip.rate == 8000 and clip.seconds > 0.3
    assert len(log.read_text().splitlines()) == 1


def test_the_name_goes_to_espeak_as_text_on_stdin_never_as_an_option(tmp_path, fake_espeak):
    exe, log = fake_espeak
    names.name_clip("--help <speak>Jo\x07</speak>", "es", tmp_path, espeak=str(exe))
    line = log.read_text()
    assert "['-v', 'es-419', '-s', '140', '--stdout']" in line
    assert "'--help <speak>Jo </speak>'" in line     # control character dropped


def test_without_espeak_the_generic_prompt_is_used(tmp_path):
    clip = names.name_clip("Lakeside County Jail", "en", tmp_path, "cp_a_correctional_facility",
                           espeak=str(tmp_path / "missing"))
    assert clip == "cp_a_correctional_facility"
    assert names.name_clip("Ana", "es", tmp_path, espeak=str(tmp_path / "missing")) is None


def test_no_name_or_an_unspeakable_one_falls_back(tmp_path, fake_espeak):
    exe, _ = fake_espeak
    assert names.name_clip(None, "en", tmp_path, "cp_a_correctional_facility",
                           espeak=str(exe)) == "cp_a_correctional_facility"
    assert names.name_clip("  ...  ", "en", tmp_path, espeak=str(exe)) is None
    with pytest.raises(BadName, match="nothing speakable"):
        names.spoken_name("!!!", "en", tmp_path, espeak=str(exe))


def test_a_wrong_fallback_id_is_a_bug_caught_at_once(tmp_path):
    with pytest.raises(KeyError):
        names.name_clip("Ana", "en", tmp_path, "cp_a_correctional_facilty")


def test_cache_key_depends_on_language_and_text(tmp_path):
    a = names.cache_path("Ana", "en", tmp_path)
    assert a != names.cache_path("Ana", "es", tmp_path)
    assert a != names.cache_path("Ann", "en", tmp_path)
    assert a == names.cache_path("  Ana ", "en", tmp_path)


@pytest.mark.skipif(not __import__("shutil").which("espeak-ng"), reason="espeak-ng not installed")
def test_real_espeak_makes_a_telephone_name(tmp_path):
    path = names.spoken_name("Lakeside County Jail", "en", tmp_path)
    clip = audio.read_wav(path)
    assert clip.rate == 8000 and 0.5 < clip.seconds < 5
