"""The console's pure parts: the message catalogue, language choice, SVG charts, password hashes;
and password storage and login throttling on a real PostgreSQL."""
from __future__ import annotations

import datetime as dt
import re
import string
from decimal import Decimal
from pathlib import Path
from xml.etree import ElementTree

import pytest
from hypothesis import given, settings, strategies as st

from web import sessions
from web.console import charts, passwords
from web.operators import add_operator
from web.pages.messages import CATALOGUE, choose_language, translator

TEMPLATES = Path(__file__).resolve().parents[2] / "web" / "templates"
T0 = dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone.utc)


def test_every_message_exists_in_english_and_spanish_with_the_same_placeholders():
    en, es = CATALOGUE["en"], CATALOGUE["es"]
    assert set(en) == set(es)
    fields = lambda s: {f for _, f, _, _ in string.Formatter().parse(s) if f}  # noqa: E731
    for key in en:
        assert fields(en[key]) == fields(es[key]), key


def test_every_key_a_template_or_the_console_uses_is_catalogued():
    used = set()
    sources = list(TEMPLATES.rglob("*.html")) + list(
        (TEMPLATES.parent / "console").glob("*.py"))
    for path in sources:
        used |= set(re.findall(r"""\bt\(\s*["']([a-z_.]+)["']""", path.read_text()))
        used |= set(re.findall(r'"((?:login|console)\.[a-z_.]+)"', path.read_text()))
    missing = sorted(k for k in used if k not in CATALOGUE["en"])
    assert not missing, missing
    assert len(used) > 50


@pytest.mark.parametrize("explicit, header, lang", [
    (None, "es-MX,es;q=0.9,en;q=0.8", "es"), (None, "en-US,es;q=0.5", "en"),
    ("es", "en", "es"), ("fr", "fr-FR", "en"), (None, "", "en"), (None, "es;q=x", "es"),
    (None, "de,es;q=0.1", "es"),
])
def test_the_page_language_comes_from_the_choice_then_the_browser(explicit, header, lang):
    assert choose_language(explicit, header) == lang


def test_a_translator_fills_values_and_falls_back_to_english():
    assert translator("es")("login.throttled", minutes=3).startswith("Demasiados")
    assert translator("xx")("login.submit") == "Log in"


def test_a_chart_is_valid_svg_with_one_bar_per_positive_value_and_escaped_names():
    days = ["2026-03-01", "2026-03-02", "2026-03-03"]
    svg = charts.stacked_bars("Minutes <per> day", days, [
        charts.Series("north", {"2026-03-01": Decimal("12.5"), "2026-03-03": Decimal("3")}),
        charts.Series('<script>alert("x")</script>', {"2026-03-02": Decimal("40")}),
    ])
    root = ElementTree.fromstring(svg)                  # well-formed XML
    ns = "{http://www.w3.org/2000/svg}"
    bars = [r for r in root.iter(ns + "rect") if r.find(ns + "title") is not None]
    assert len(bars) == 3
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    heights = {b.find(ns + "title").text.split(":")[0]: float(b.get("height")) for b in bars}
    assert heights['2026-03-02 <script>alert("x")</script>'] > heights["2026-03-01 north"]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.decimals(min_value=0, max_value=10**9, places=2), min_size=1, max_size=40))
def test_no_bar_rises_above_the_plot(values):
    cats = [f"c{i}" for i in range(len(values))]
    svg = charts.stacked_bars("t", cats, [charts.Series("s", dict(zip(cats, values)))])
    for y, h in re.findall(r'<rect x="[^"]+" y="([^"]+)" width="[^"]+" height="([^"]+)" fill',
                           svg):
        assert float(y) >= charts.MARGIN_TOP - 0.1 and float(h) >= 0


def test_many_series_are_folded_into_other():
    series = [charts.Series(f"f{i}", {"d": Decimal(1)}) for i in range(20)]
    svg = charts.stacked_bars("t", ["d"], series)
    assert ">other<" in svg and ">f19<" not in svg


def test_a_password_hash_is_salted_scrypt_and_verifies_only_its_password():
    a, b = passwords.hash_password("same password!"), passwords.hash_password("same password!")
    assert a != b and a.startswith("scrypt$16384$8$1$")
    assert passwords.verify_password("same password!", a)
    assert not passwords.verify_password("same password?", a)
    for broken in ("", "scrypt$", "bcrypt$1$2$3$4$5", "scrypt$x$8$1$AA==$AA=="):
        assert not passwords.verify_password("same password!", broken)


async def test_setting_a_password_ends_sessions_and_is_audited_without_the_secret(conn):
    await add_operator(conn, "ana", "billing", [], actor="cli:test", via="cli")
    opened = await sessions.open_session(conn, "operator", "ana",
                                         policy=sessions.SessionPolicy(), now=T0)
    await passwords.set_password(conn, "ana", "first password!", actor="cli:root", via="cli",
                                 now=T0)
    assert await sessions.resume(conn, opened.token, kind="operator",
                                 policy=sessions.SessionPolicy(), now=T0) is None
    row = await conn.fetchrow("SELECT * FROM audit_event WHERE action = 'operator.password.set'")
    assert row["target"] == "ana" and "first password" not in str(dict(row))
    stored = await conn.fetchval("SELECT hash FROM operator_password")
    assert "first password" not in stored
    for bad in ("short", "x" * 300, "tab\tinside!!!!"):
        with pytest.raises(passwords.PasswordInvalid):
            await passwords.set_password(conn, "ana", bad, actor="cli:root", via="cli", now=T0)
    assert await conn.fetchval("SELECT hash FROM operator_password") == stored


async def test_throttling_counts_failures_per_operator_and_per_source_within_the_window(conn):
    await add_operator(conn, "ana", "billing", [], actor="cli:test", via="cli")
    await passwords.set_password(conn, "ana", "right password!", actor="t", via="cli", now=T0)
    check = passwords.check_login
    ok = await check(conn, "ana", "right password!", source="10.0.0.1", now=T0)
    assert ok.operator_id == "ana"
    for i in range(passwords.FAILURES_PER_OPERATOR_MAX):
        r = await check(conn, "ana", "wrong", source="10.0.0.1", now=T0 + dt.timedelta(seconds=i))
        assert r.operator_id is None and r.refusal == "login.failed"
    locked = await check(conn, "ana", "right password!", source="10.0.0.9",
                         now=T0 + dt.timedelta(minutes=1))
    assert locked.refusal == "login.throttled" and 0 < locked.retry_after <= 15 * 60
    later = T0 + passwords.FAILURE_WINDOW + dt.timedelta(seconds=10)
    assert (await check(conn, "ana", "right password!", source="10.0.0.1",
                        now=later)).operator_id == "ana"
    # One source guessing many operator ids is throttled by its own count.
    for i in range(passwords.FAILURES_PER_SOURCE_MAX):
        await check(conn, f"guess{i}", "x", source="10.6.6.6", now=later)
    r = await check(conn, "ana", "right password!", source="10.6.6.6", now=later)
    assert r.refusal == "login.throttled"


def test_a_recording_is_offered_only_for_an_unprivileged_call_inside_the_data_dir(tmp_path):
    from web.console.cdr_detail import recording_path
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "a.wav").write_bytes(b"RIFF")
    (tmp_path.parent / "outside.wav").write_bytes(b"RIFF")
    ok = {"privileged": False, "recording": "rec/a.wav"}
    assert recording_path(ok, str(tmp_path)) == str(tmp_path / "rec" / "a.wav")
    assert recording_path({**ok, "privileged": True}, str(tmp_path)) is None
    for escape in ("../outside.wav", str(tmp_path.parent / "outside.wav"), "rec/missing.wav",
                   "", None):
        assert recording_path({**ok, "recording": escape}, str(tmp_path)) is None, escape


async def test_parallel_guesses_cannot_slip_past_the_count(pg_dsn, conn):
    import asyncio

    import asyncpg
    await add_operator(conn, "ana", "billing", [], actor="cli:test", via="cli")
    await passwords.set_password(conn, "ana", "right password!", actor="t", via="cli", now=T0)
    conns = [await asyncpg.connect(pg_dsn) for _ in range(10)]
    try:
        outcomes = await asyncio.gather(*(
            passwords.check_login(c, "ana", f"guess {i}", source=f"10.0.0.{i}", now=T0)
            for i, c in enumerate(conns)))
    finally:
        for c in conns:
            await c.close()
    refusals = sorted(o.refusal for o in outcomes)
    assert refusals.count("login.failed") == passwords.FAILURES_PER_OPERATOR_MAX
    assert refusals.count("login.throttled") == 10 - passwords.FAILURES_PER_OPERATOR_MAX
