"""Generate the prompt WAVs from the catalog with espeak-ng (run by people, never at call time).

    python -m ivr.make_prompts            # (re)generate what changed, remove orphans
    python -m ivr.make_prompts --all      # regenerate everything
    python -m ivr.make_prompts --check    # exit 1 if any WAV is missing, stale or orphaned

Needs espeak-ng (``apt-get install -y espeak-ng``). The output is committed with this script, so a
fresh machine plays prompts without any TTS. ``ivr/prompts/MANIFEST.json`` records, per WAV, a hash
of the voice, speed and words it was made from; a test compares it with the catalog, so editing a
prompt's words without regenerating its WAV fails the suite.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from ivr import audio, catalog

__all__ = ["MANIFEST", "SPEED_WPM", "fingerprint", "plan", "main"]

MANIFEST = catalog.PROMPTS_DIR / "MANIFEST.json"
SPEED_WPM = 160  # a little slower than espeak's 175: easier to follow over a phone line


PROCESSING = "trim+8k+pauses<=0.25+peak0.7"  # bump when audio.for_telephone changes


def fingerprint(lang: str, text: str) -> str:
    """What a WAV depends on: voice, speed, processing and words."""
    key = f"{catalog.VOICES[lang]}|{SPEED_WPM}|{PROCESSING}|{text}".encode()
    return hashlib.sha256(key).hexdigest()[:16]


def _read_manifest() -> dict[str, dict[str, str]]:
    try:
        manifest: dict[str, dict[str, str]] = json.loads(MANIFEST.read_text())
        return manifest
    except FileNotFoundError:
        return {}


def plan(everything: bool = False) -> tuple[list[tuple[str, str, str]], list[Path]]:
    """(lang, id, text) to generate, and orphan WAVs to delete."""
    manifest = _read_manifest()
    todo = [
        (lang, pid, text)
        for lang, pid, text in catalog.entries()
        if everything
        or not catalog.path(pid, lang).exists()
        or manifest.get(lang, {}).get(pid) != fingerprint(lang, text)
    ]
    wanted = {catalog.path(pid, lang) for lang, pid, _ in catalog.entries()}
    orphans = sorted(p for p in catalog.PROMPTS_DIR.glob("*/*.wav") if p not in wanted)
    return todo, orphans


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m ivr.make_prompts", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--all", action="store_true", help="regenerate every prompt")
    ap.add_argument("--check", action="store_true", help="report only; exit 1 if out of date")
    args = ap.parse_args(argv)
    todo, orphans = plan(args.all)
    if args.check:
        for lang, pid, _ in todo:
            print(f"stale or missing: {lang}/{pid}.wav")
        for p in orphans:
            print(f"orphan: {p.relative_to(catalog.PROMPTS_DIR)}")
        return 1 if todo or orphans else 0
    manifest = _read_manifest()
    for lang, pid, text in todo:
        clip = audio.for_telephone(audio.speak(text, catalog.VOICES[lang], speed_wpm=SPEED_WPM))
        audio.write_wav(catalog.path(pid, lang), clip)
        manifest.setdefault(lang, {})[pid] = fingerprint(lang, text)
        print(f"{lang}/{pid}.wav  {clip.seconds:5.2f} s  {text}")
    for p in orphans:
        p.unlink()
        print(f"removed orphan {p.relative_to(catalog.PROMPTS_DIR)}")
    live = {(lang, pid) for lang, pid, _ in catalog.entries()}
    manifest = {
        lang: {pid: h for pid, h in sorted(ids.items()) if (lang, pid) in live}
        for lang, ids in sorted(manifest.items())
    }
    MANIFEST.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    total = sum(p.stat().st_size for p in catalog.PROMPTS_DIR.glob("*/*.wav"))
    print(
        f"{len(todo)} generated, {len(orphans)} removed, {total / 1e6:.2f} MB in "
        f"{catalog.PROMPTS_DIR}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
