"""Proof of a number by a real call: a holder asks through the family API, the node's media worker
(a real pjsua2 process) dials the trunk, and the called party (pjsua2 in this process, over real
SIP and RTP) records what it hears. The test finds the digits in that recording with a matched
filter (tests/e2e/spoken_digits.py), enters them through the API, and the number is proven. So a
wrong spoken code fails here: the digits heard would not be the code the node stored."""
from __future__ import annotations

import asyncio
import re
from pathlib import Path

import asyncpg
import pytest
import requests

from ops.api import api_mount
from ops.config import load
from ops.node import start_node
from switch.tools.sim import Phone, wav_complete
from tests.e2e.spoken_digits import digit_templates, read_wav, spoken_digits
from tests.switch.fakecore import free_port, free_port_outside, free_rtp_range

NUMBER = "+12125550142"
PW = "correct horse battery"
WAIT = 45.0


async def in_thread(fn, *args, **kw):
    """`requests` blocks: the node under test runs on this very loop."""
    return await asyncio.to_thread(fn, *args, timeout=30, **kw)


class Holder:
    def __init__(self, base: str) -> None:
        self.base, self.http, self.csrf = base, requests.Session(), None

    async def post(self, path, **kw):
        headers = {"X-CSRF-Token": self.csrf} if self.csrf else {}
        return await in_thread(self.http.post, self.base + path, headers=headers, **kw)

    async def get(self, path, **kw):
        return await in_thread(self.http.get, self.base + path, **kw)


def said_twice(heard: str) -> str | None:
    """The six digits said twice in `heard`: both sayings whole, or one whole and the other
    missing one digit (on a loaded machine the media path may lose a packet or two of one
    digit, and its detection with them). Never a code the audio does not hold: the lossy saying
    must be the whole one less one digit, and the code then has to prove the number."""
    if len(heard) == 12:
        return heard[:6] if heard[:6] == heard[6:] else None
    if len(heard) != 11:
        return None
    # Which saying lost the digit is not marked: each reading that fits is a candidate, and two
    # readings with different codes are not trusted either.
    codes = {whole for whole, lossy in ((heard[:6], heard[6:]), (heard[5:], heard[:5]))
             if any(whole[:k] + whole[k + 1:] == lossy for k in range(6))}
    return codes.pop() if len(codes) == 1 else None


def test_said_twice_finds_the_code_and_nothing_else():
    assert said_twice("123456123456") == "123456"
    assert said_twice("12345612356") == "123456"       # the second saying lost its 4
    assert said_twice("12456123456") == "123456"       # the first lost its 3
    assert said_twice("99614997614") == "997614"
    assert said_twice("23456123456") is None           # 234561 then 23456, or 23456 then 123456
    assert said_twice("123456654321") is None
    assert said_twice("12345665432") is None
    assert said_twice("1234561234") is None            # two digits lost: not trusted


@pytest.fixture
async def node(reactor, pg_dsn, tmp_path):
    """A node (core, API, one media worker) whose only route reaches `phone`, a pjsua2 called
    party in this process."""
    from twisted.logger import globalLogPublisher
    phone_port = free_port()
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("INSERT INTO route (prefix, trunk) VALUES ('+', $1)",
                           f"sip:{{e164}}@127.0.0.1:{phone_port}")
    finally:
        await conn.close()
    rtp = free_rtp_range(60)
    config = tmp_path / "node.toml"
    config.write_text(f"""
[node]
data_dir = "{tmp_path / 'var'}"
[database]
url = "{pg_dsn}"
pool_min = 1
pool_max = 6
[switch]
workers = 1
sip_host = "127.0.0.1"
worker_sip_port_base = {free_port_outside(rtp)}
rtp_port_base = {rtp[0]}
rtp_ports_per_worker = 40
heartbeat_seconds = 0.5
[worker]
trunk_setup_seconds = 5.0
trunk_answer_seconds = 15.0
""")
    cfg = load(config, environ={})
    lines: list[str] = []

    def observe(event):
        if event.get("event") == "worker_output" and isinstance(event.get("line"), str):
            lines.append(event["line"])
    globalLogPublisher.addObserver(observe)
    n = await start_node(cfg, reactor, workers=1, amp_port=0, http_port=0, frontdoor_port=0,
                         mount=api_mount(cfg))
    phone = Phone(reactor, sip_port=phone_port, rtp_port_min=rtp[0] + 44,
                  rtp_port_max=rtp[0] + 58)
    phone.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while n.supervisor.table.slots(reactor.seconds())["free"] < 1:
            assert loop.time() < deadline, "the worker never said Hello\n" + "\n".join(lines)
            await asyncio.sleep(0.05)
        yield n, phone, pg_dsn, lines
    finally:
        await asyncio.wait_for(phone.shutdown().asFuture(asyncio.get_running_loop()), WAIT)
        await asyncio.wait_for(n.stop(), WAIT)
        globalLogPublisher.removeObserver(observe)
        for task in asyncio.all_tasks():         # the family sweeps the API mount started
            if task.get_coro().__qualname__.startswith("start_sweeps"):
                task.cancel()


async def logged_in(base: str, dsn: str, email: str) -> Holder:
    h = Holder(base)
    assert (await h.post("/family/register", json={"email": email, "password": PW})
            ).status_code == 202
    conn = await asyncpg.connect(dsn)
    try:
        body = await conn.fetchval("SELECT body FROM family_outbox WHERE recipient = $1 AND "
                                   "kind = 'verify' ORDER BY id DESC LIMIT 1", email)
    finally:
        await conn.close()
    token = re.search(r"^    (\S+)$", body, re.M).group(1)
    assert (await h.post("/family/verify", json={"token": token})).status_code == 200
    r = await h.post("/family/login", json={"email": email, "password": PW})
    assert r.status_code == 200, r.text
    h.csrf = r.json()["csrf_token"]
    return h


async def test_the_code_the_call_speaks_proves_the_number(node, tmp_path):
    n, phone, dsn, lines = node
    loop = asyncio.get_running_loop()
    recording = tmp_path / "heard.wav"
    calls = []

    def answered(call):
        calls.append(call)
        call.media.addCallback(lambda c: c.record(str(recording)))
    phone.on_call = answered

    base = f"http://127.0.0.1:{n.http_port}/api/v1"
    h = await logged_in(base, dsn, "ana@example.org")
    assert (await h.post("/family/numbers", json={"number": "(212) 555-0142"})).status_code == 201
    r = await h.post(f"/family/numbers/{NUMBER}/proof-call")
    assert r.status_code == 202, r.text
    assert r.json()["state"] == "calling", r.text
    again = await h.post(f"/family/numbers/{NUMBER}/proof-call")      # moments later: refused
    assert again.status_code == 429 and again.headers["Retry-After"] == "60", again.text
    assert "moments ago" in again.json()["detail"]
    r = await h.post("/family/numbers/+12125550143/proof-call")        # not one of hers
    assert r.status_code == 404, r.text

    deadline = loop.time() + WAIT
    while not calls:
        assert loop.time() < deadline, "the worker never rang the called party\n" + \
            "\n".join(lines[-40:])
        await asyncio.sleep(0.05)
    [call] = calls
    assert call.incoming.request_user == NUMBER
    await asyncio.wait_for(call.ended.asFuture(loop), WAIT)     # the switch hangs up
    while not wav_complete(str(recording)):
        assert loop.time() < deadline + WAIT, "the recording was never closed"
        await asyncio.sleep(0.05)

    while (status := (await h.get(f"/family/numbers/{NUMBER}/proof-call")).json()
           )["state"] == "calling":
        assert loop.time() < deadline + WAIT, status
        await asyncio.sleep(0.05)
    assert status["state"] == "spoken" and status["outcome"] == "spoken", status

    heard = spoken_digits(read_wav(recording), digit_templates("en"))
    code = said_twice(heard)
    assert code is not None, f"heard {heard!r}"

    wrong = f"{(int(code) + 1) % 10**6:06d}"
    r = await h.post(f"/family/numbers/{NUMBER}/proof-code", json={"code": wrong})
    assert r.status_code == 409 and "attempts left" in r.text, r.text
    # The portal shows the state and the code form, in English and in Spanish, and takes it.
    portal = f"http://127.0.0.1:{n.http_port}/portal/numbers/{NUMBER}/prove"
    page = await in_thread(h.http.get, portal)
    assert page.status_code == 200 and 'data-state="spoken"' in page.text, page.text
    assert "Attempts left: 4" in page.text and 'id="proof-code-form"' in page.text
    es = await in_thread(h.http.get, portal + "?lang=es")
    assert "La llamada le dijo su código" in es.text and "Llámenme otra vez" in es.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', es.text).group(1)
    r = await in_thread(h.http.post, portal.replace("/prove", "/proof-code"),
                        data={"csrf": csrf, "code": code})
    assert r.status_code == 200 and "El número está comprobado" in r.text, r.text
    r = await h.get("/family/numbers")
    [owned] = r.json()["numbers"]
    assert owned["state"] == "proven" and owned["account"] == f"prepaid:{NUMBER}"
    r = await h.post(f"/family/numbers/{NUMBER}/proof-code", json={"code": "12ab"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "code", r.text
    r = await h.post(f"/family/numbers/{NUMBER}/proof-call")          # proven: no more calls
    assert r.status_code == 409 and "already proven" in r.text, r.text
    # single use: the same code again proves nothing more
    r = await h.post(f"/family/numbers/{NUMBER}/proof-code", json={"code": code})
    assert r.status_code == 409, r.text

    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT * FROM family_number_proof")
        legs = await conn.fetchval("SELECT count(*) FROM ledger_transfer")
    finally:
        await conn.close()
    assert row["outcome"] == "spoken" and row["sip_code"] == 200 and row["talk_seconds"] >= 5
    assert row["trunk"] == f"sip:{NUMBER}@127.0.0.1:{phone.sip_port}"
    assert legs == 0                          # a proof call is free: no money moved
    assert not any(code in line for line in lines), "the code reached the worker's log"
    metric = n.metrics.registry.get_sample_value
    assert metric("ics_number_proof_requests_total", {"decision": "allow"}) == 1
    assert metric("ics_number_proof_calls_total", {"outcome": "placed"}) == 1
    assert metric("ics_number_proof_calls_total", {"outcome": "ended_spoken"}) == 1
    assert metric("ics_number_proof_codes_total", {"result": "wrong_code"}) == 1
    assert metric("ics_number_proof_codes_total", {"result": "ok"}) == 1
    assert metric("ics_number_proof_codes_total", {"result": "used"}) == 1


def test_the_decoder_hears_exactly_the_digits_said():
    """The matched filter on the prompts themselves: the code, twice, and nothing from the
    words around it (checked in both languages)."""
    import numpy as np

    from ivr import catalog
    from ivr.flows.proof import ProofMessage, again_clips, first_clips
    for lang in ("en", "es"):
        m = ProofMessage(lang, "4819027")
        audio = np.concatenate([read_wav(catalog.resolve(c, lang))
                                for c in first_clips(m) + again_clips(m)])
        assert spoken_digits(audio, digit_templates(lang)) == "4819027" * 2
        assert spoken_digits(audio[: len(audio) // 4], digit_templates(lang)) == ""
