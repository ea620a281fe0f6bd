"""Datagram sequences that crashed media workers (issue: REFER, Replaces, an INVITE without m=
then a stray ACK): each is sent to a real worker process, which must refuse, dial nobody and keep
running with the same pid."""
from __future__ import annotations

import pytest

from tests.security.worker_rig import WAIT, eventually, peers, reactor, start_worker  # noqa: F401
from tests.security.rawsip import SDP_NO_MEDIA, header, status, tag
from tests.switch.fakecore import Script

pytestmark = pytest.mark.timeout(120)

NUMBER = "+15552345678"
PIN = {"extra": "X-ICS-PIN: 10011234"}


def alive(worker) -> bool:
    return worker.proc.poll() is None and worker.proc.pid == worker.pid_at_start


async def kiosk_call(kiosk, worker, *, number=NUMBER):
    """A raw kiosk's call to the worker, answered and ACKed: (dialog, worker address)."""
    target = ("127.0.0.1", worker.sip_port)
    dialog = kiosk.invite(target, number, **PIN)
    answer = await kiosk.final_response(dialog, timeout=WAIT)
    assert status(answer) == 200, answer
    kiosk.ack(dialog, answer, target)
    return dialog, target


async def hang_up(kiosk, dialog, target) -> None:
    kiosk.in_dialog(dialog, "BYE", target)
    assert status(await kiosk.final_response(dialog, "BYE", timeout=WAIT)) == 200


async def test_refer_from_the_kiosk_leg_is_refused_and_the_target_is_never_dialled(
        start_worker, peers):
    core, worker = await start_worker(Script(trunks=[]))
    kiosk, target_ua = await peers(), await peers()
    dialog, target = await kiosk_call(kiosk, worker)
    refer_to = f"sip:+15550000000@{target_ua.addr[0]}:{target_ua.addr[1]}"
    kiosk.in_dialog(dialog, "REFER", target, extra=f"Refer-To: <{refer_to}>")
    refused = await kiosk.final_response(dialog, "REFER", timeout=WAIT)
    assert status(refused) in (403, 405, 603), refused
    kiosk.in_dialog(dialog, "REFER", target, extra=f"Refer-To: <{refer_to}>")  # and again
    assert status(await kiosk.final_response(dialog, "REFER", timeout=WAIT)) >= 400
    await hang_up(kiosk, dialog, target)
    # The BYE was answered after both REFERs: a dial they caused would have been sent by now.
    assert target_ua.received == []
    assert alive(worker), worker.output[-3000:]


async def test_refer_then_the_referrer_hangs_up_then_the_target_answers_crashes_nothing(
        start_worker, peers):
    core, worker = await start_worker(Script(trunks=[]))
    kiosk, target_ua = await peers(), await peers()
    dialog, target = await kiosk_call(kiosk, worker)
    refer_to = f"sip:+15550000000@{target_ua.addr[0]}:{target_ua.addr[1]}"
    kiosk.in_dialog(dialog, "REFER", target, extra=f"Refer-To: <{refer_to}>")
    await kiosk.final_response(dialog, "REFER", timeout=WAIT)
    await hang_up(kiosk, dialog, target)
    for text, addr in list(target_ua.received):        # if dialled anyway: answer it
        if text.startswith("INVITE"):
            target_ua.sendto(target_ua.response_to(text, 200), addr)
    # A second call on the same worker still works end to end.
    dialog2, _ = await kiosk_call(kiosk, worker)
    await hang_up(kiosk, dialog2, target)
    assert [t for t, _ in target_ua.received if t.startswith("INVITE")] == []
    assert alive(worker), worker.output[-3000:]


@pytest.mark.parametrize("name", ["Replaces", "Join"])
async def test_invite_naming_a_live_dialog_is_refused_and_the_dialog_survives(
        name, start_worker, peers):
    core, worker = await start_worker(Script(trunks=[]))
    kiosk, attacker = await peers(), await peers()
    dialog, target = await kiosk_call(kiosk, worker)
    naming = f"{name}: {dialog.call_id};to-tag={dialog.to_tag};from-tag={dialog.from_tag}"
    hostile = attacker.invite(target, NUMBER, extra=naming)
    refused = await attacker.final_response(hostile, timeout=WAIT)
    assert status(refused) == 403, refused
    attacker.ack(hostile, refused, target)
    # The named dialog was not torn down: the kiosk got no BYE, and its own BYE is answered 200.
    await hang_up(kiosk, dialog, target)
    assert kiosk.requests("BYE") == []
    assert attacker.requests("BYE") == []
    assert alive(worker), worker.output[-3000:]


async def test_replaces_naming_the_senders_own_dialog_is_refused(start_worker, peers):
    core, worker = await start_worker(Script(trunks=[]))
    kiosk = await peers()
    dialog, target = await kiosk_call(kiosk, worker)
    naming = f"Replaces: {dialog.call_id};to-tag={dialog.to_tag};from-tag={dialog.from_tag}"
    again = kiosk.invite(target, NUMBER, extra=naming + "\r\n" + PIN["extra"])
    refused = await kiosk.final_response(again, timeout=WAIT)
    assert status(refused) == 403, refused
    kiosk.ack(again, refused, target)
    await hang_up(kiosk, dialog, target)
    assert kiosk.requests("BYE") == []
    assert alive(worker), worker.output[-3000:]


async def test_invite_without_media_then_a_stray_ack_without_to_tag_crashes_nothing(
        start_worker, peers):
    core, worker = await start_worker(Script(trunks=[]))
    attacker, kiosk = await peers(), await peers()
    target = ("127.0.0.1", worker.sip_port)
    bad = attacker.invite(target, NUMBER, body=SDP_NO_MEDIA.format(ip="127.0.0.1"))
    answer = await attacker.final_response(bad, timeout=WAIT)
    assert status(answer) >= 400, answer
    assert tag(header(answer, "To")), answer
    # An ACK on a new branch with no To-tag: matches no transaction and no dialog.
    attacker.sendto(attacker.request(bad, "ACK", to_tag=False, cseq_method="ACK"), target)
    attacker.ack(bad, answer, target)                  # and the proper one
    dialog, _ = await kiosk_call(kiosk, worker)        # the worker still takes calls
    await hang_up(kiosk, dialog, target)
    assert alive(worker), worker.output[-3000:]
