"""The front door on a real UDP socket, driven by SIPp (Debian's sip-tester) scenarios in sipp/."""
from __future__ import annotations

import asyncio
import dataclasses
import shutil
import socket
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet import defer

from switch.settings import SwitchSettings
from switch.processes import frontdoor
from switch.processes.supervisor import WorkerTable

SCENARIOS = Path(__file__).with_name("sipp")
DIALLED = "15551234567"
WORKER_PORTS = (15071, 15072)    # the table's workers; nothing listens there, SIPp stops at 302

pytestmark = pytest.mark.skipif(shutil.which("sipp") is None,
                                reason="SIPp missing: apt-get install sip-tester (tests/run does)")


@pytest.fixture
async def door(reactor, settle):
    settings = dataclasses.replace(
        SwitchSettings(), sip_host="127.0.0.1", retry_after_seconds=9,
        frontdoor_rate_per_second=100.0, frontdoor_burst=50, slot_reservation_seconds=1.0)
    table = WorkerTable(slot_reservation_seconds=settings.slot_reservation_seconds,
                        default_host="127.0.0.1")
    now = reactor.seconds()
    for i, port in enumerate(WORKER_PORTS):
        table.spawned(f"w{i + 1}", host="127.0.0.1", sip_port=port, pid=1, now=now)
        table.hello(f"w{i + 1}", capacity=2, sip_port=port, pid=1, now=now)
    proto, listening = frontdoor.listen(reactor, table, settings, registry=CollectorRegistry(),
                                        port=0)
    proto.port = listening.getHost().port
    yield proto
    await settle(defer.maybeDeferred(listening.stopListening))


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def sipp(door, scenario, tmp_path, *args, calls=1, timeout=30.0):
    """Run one SIPp scenario against the door; returns (exit code, its output and error log)."""
    errors = tmp_path / f"{scenario}.errors.log"
    messages = tmp_path / f"{scenario}.messages.log"
    proc = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(SCENARIOS / f"{scenario}.xml"), "-nostdin", "-i", "127.0.0.1",
        "-p", str(_free_udp_port()), "-s", DIALLED, "-m", str(calls), "-timeout", f"{int(timeout)}s", "-timeout_error",
        "-trace_err", "-error_file", str(errors), "-trace_msg", "-message_file", str(messages),
        *args, f"127.0.0.1:{door.port}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout + 10)
    log = out.decode(errors="replace")[-3000:]
    for f in (errors, messages):
        if f.exists():
            log += f"\n--- {f.name}\n" + f.read_text(errors="replace")[-4000:]
    return proc.returncode, log


def requests(door, method, response):
    return door.requests_total.labels(method=method, response=response)._value.get()


def dropped(door, reason):
    return door.dropped_total.labels(reason=reason)._value.get()


async def test_sipp_invite_is_redirected_to_a_worker_port_and_its_ack_absorbed(door, tmp_path,
                                                                             eventually):
    code, log = await sipp(door, "frontdoor_redirect", tmp_path)
    assert code == 0, log
    assert requests(door, "INVITE", "302") == 1
    await eventually(lambda: requests(door, "ACK", "absorbed") == 1)


async def test_sipp_options_is_answered_200(door, tmp_path):
    code, log = await sipp(door, "frontdoor_options", tmp_path)
    assert code == 0, log
    assert requests(door, "OPTIONS", "200") == 1


async def test_sipp_invite_gets_503_with_retry_after_when_every_worker_is_full(door, tmp_path,
                                                                             reactor):
    for w in door.table:
        door.table.heartbeat(w.worker_id, [f"{w.worker_id}-1", f"{w.worker_id}-2"],
                             reactor.seconds())
    code, log = await sipp(door, "frontdoor_full", tmp_path)
    assert code == 0, log
    assert requests(door, "INVITE", "503") == 1 and requests(door, "INVITE", "302") == 0


async def test_garbage_datagrams_are_dropped_and_the_door_still_answers(door, tmp_path,
                                                                       eventually):
    junk = [b"\x00" * 300, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"INVITE sip:x SIP/2.0\r\n",
            bytes(range(256)), b"SIP/2.0 200 OK\r\n\r\n", b"INVITE sip:a@b SIP/2.0\r\n\r\n"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for data in junk:
            s.sendto(data, ("127.0.0.1", door.port))
    await eventually(lambda: dropped(door, "unparseable") == len(junk) - 1
                     and dropped(door, "response") == 1)
    code, log = await sipp(door, "frontdoor_options", tmp_path)
    assert code == 0, log
    assert dropped(door, "internal_error") == 0


async def test_a_flood_of_1000_invites_from_one_source_is_shed_and_the_door_still_answers(
        door, tmp_path, eventually, reactor):
    began = reactor.seconds()
    code, log = await sipp(door, "frontdoor_flood", tmp_path, "-r", "1000", "-l", "1000",
                           calls=1000)
    took = reactor.seconds() - began
    assert code == 0, log
    handled = lambda: (requests(door, "INVITE", "302") + requests(door, "INVITE", "503")  # noqa
                       + requests(door, "INVITE", "486") + dropped(door, "rate_limited"))
    # every INVITE is either answered or shed; the kernel may drop some before we see them
    for _ in range(100):
        if handled() >= 900:
            break
        await asyncio.sleep(0.1)
    assert handled() >= 900, (handled(), log)
    answered = (requests(door, "INVITE", "302") + requests(door, "INVITE", "503")
                + requests(door, "INVITE", "486"))
    assert dropped(door, "rate_limited") >= 500, (answered, dropped(door, "rate_limited"))
    assert answered <= 50 + 100 * took + 1                 # burst + rate over the flood's span
    # One source holds 2 reservations at a time (486 beyond; they lapse after 1 s, so a flood
    # longer than that may get 2 more): the door never says 503 with slots free.
    assert 2 <= requests(door, "INVITE", "302") <= 4 and requests(door, "INVITE", "503") == 0
    assert dropped(door, "internal_error") == 0
    await asyncio.sleep(0.2)                               # the source's bucket refills
    code, log = await sipp(door, "frontdoor_options", tmp_path)
    assert code == 0, log
    await asyncio.sleep(1.0)                               # the flood's reservations lapse
    code, log = await sipp(door, "frontdoor_redirect", tmp_path)
    assert code == 0, log
