import json

import numpy as np
import pytest

from ivr import audio, catalog, make_prompts
from ivr.catalog import UnknownLanguage, UnknownPrompt

SIZE_BYTES_MAX = 7_000_000


def test_every_catalog_prompt_has_a_wav_in_its_language():
    missing = [f"{lang}/{pid}" for lang, pid, _ in catalog.entries()
               if not catalog.path(pid, lang).is_file()]
    assert missing == []


def test_there_are_no_orphan_wavs():
    wanted = {catalog.path(pid, lang) for lang, pid, _ in catalog.entries()}
    on_disk = set(catalog.PROMPTS_DIR.glob("**/*.wav"))
    assert on_disk - wanted == set()


@pytest.mark.parametrize("lang,pid", [(lang, pid) for lang, pid, _ in catalog.entries()])
def test_every_wav_is_8khz_16bit_mono_and_not_silent(lang, pid):
    clip = audio.read_wav(catalog.path(pid, lang))   # BadWav unless 16-bit mono PCM
    assert clip.rate == 8000
    assert 0.15 < clip.seconds < 15
    rms = float(np.sqrt(np.mean(clip.samples.astype(np.float64) ** 2)))
    assert rms > 0.02 * 32767, f"{lang}/{pid} is nearly silent (rms {rms:.0f})"


def test_wavs_were_generated_from_the_current_words():
    manifest = json.loads(make_prompts.MANIFEST.read_text())
    stale = [f"{lang}/{pid}" for lang, pid, text in catalog.entries()
             if manifest.get(lang, {}).get(pid) != make_prompts.fingerprint(lang, text)]
    assert stale == [], "run: python -m ivr.make_prompts"


def test_generation_plan_is_empty_for_the_committed_prompts():
    todo, orphans = make_prompts.plan()
    assert (todo, orphans) == ([], [])


def test_prompts_stay_a_few_megabytes():
    total = sum(p.stat().st_size for p in catalog.PROMPTS_DIR.glob("*/*.wav"))
    assert total < SIZE_BYTES_MAX


def test_every_phrase_exists_in_every_language():
    for pid in catalog.PHRASES:
        for lang in catalog.LANGUAGES:
            assert catalog.text(pid, lang)


def test_deny_reasons_match_the_core_and_each_has_a_prompt():
    protocol = pytest.importorskip("switch.wire.protocol")
    assert catalog.DENY_REASONS == protocol.DENY_REASONS
    for reason in catalog.DENY_REASONS:
        for lang in catalog.LANGUAGES:
            assert catalog.path(f"deny_{reason}", lang).is_file()


def test_switch_prompts_named_in_the_design_exist():
    for pid in ("warning_one_minute", "call_ending", "please_hold", "party_no_answer",
                "party_busy", "party_refused", "cp_blocked_confirm", "notice_privileged_inmate",
                "cp_notice_privileged"):
        assert pid in catalog.ids("en") and pid in catalog.ids("es")


def test_path_resolves_an_id_to_the_language_folder():
    assert catalog.path("please_hold", "es") == catalog.PROMPTS_DIR / "es" / "please_hold.wav"
    assert catalog.resolve("goodbye", "en") == catalog.PROMPTS_DIR / "en" / "goodbye.wav"
    own = catalog.PROMPTS_DIR / "x.wav"
    assert catalog.resolve(own, "en") is own


def test_unknown_prompt_names_the_id_and_language():
    with pytest.raises(UnknownPrompt, match=r"'num_hundred' in language 'es'"):
        catalog.path("num_hundred", "es")      # an English-only number word
    with pytest.raises(UnknownPrompt, match="no_such_prompt"):
        catalog.text("no_such_prompt", "en")


def test_unknown_language_is_refused():
    with pytest.raises(UnknownLanguage, match="'fr'"):
        catalog.path("goodbye", "fr")


def test_spanish_hundreds_have_masculine_and_feminine_forms():
    assert catalog.text("num_500", "es") == "quinientos"
    assert catalog.text("num_500_f", "es") == "quinientas"
    assert catalog.text("num_700_f", "es") == "setecientas"
    assert catalog.text("num_21_m", "es") == "veintiún"
