"""The worker's screen (switch.worker.screen): one row per rule, the token buckets on an injected
clock, and hostile datagrams that must never raise."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from switch.worker.screen import Rule, Screen, ScreenSettings, parse_call_id, parse_request


def req(method="INVITE", *, call_id="c1", to_tag="", extra="", uri="sip:x@w"):
    to = "<sip:+15552345678@w>" + (f";tag={to_tag}" if to_tag else "")
    return (f"{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKa\r\n"
            f"From: <sip:kiosk-1@10.0.0.9>;tag=f1\r\nTo: {to}\r\nCall-ID: {call_id}\r\n"
            f"CSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n")


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def screen():
    s = Screen(Clock())
    s.admit("live", "10.0.0.9")
    return s


@pytest.mark.parametrize("text,source,rule,code", [
    ("garbage\r\n\r\n", "10.0.0.9", Rule.MALFORMED, 0),
    (req().replace("Call-ID: c1\r\n", ""), "10.0.0.9", Rule.MALFORMED, 0),
    (req("REFER", call_id="live", to_tag="w1", extra="Refer-To: <sip:1@evil>\r\n"),
     "10.0.0.9", Rule.NO_TRANSFER, 403),
    (req("REFER"), "10.0.0.66", Rule.NO_TRANSFER, 403),
    (req(extra="Replaces: live;to-tag=w1;from-tag=f1\r\n"), "10.0.0.9", Rule.NO_REPLACE, 403),
    (req(extra="join: live;to-tag=w1;from-tag=f1\r\n"), "10.0.0.9", Rule.NO_REPLACE, 403),
    (req("ACK"), "10.0.0.9", Rule.STRAY_ACK, 0),
    (req("ACK", call_id="live"), "10.0.0.9", Rule.STRAY_ACK, 0),
    (req("BYE", call_id="live", to_tag="w1"), "10.0.0.66", Rule.OFF_PATH, 403),
    (req("INVITE", call_id="live", to_tag="w1"), "10.0.0.66", Rule.OFF_PATH, 403),
    (req("ACK", call_id="live", to_tag="w1"), "10.0.0.66", Rule.OFF_PATH, 0),
])
def test_each_rule_stops_its_request_with_its_answer(screen, text, source, rule, code):
    v = screen.request(text, source)
    assert (v.rule, v.code) == (rule, code)
    assert screen.stopped[rule] == 1


@pytest.mark.parametrize("text,source", [
    (req(), "10.0.0.9"),                                          # a new call
    (req("BYE", call_id="live", to_tag="w1"), "10.0.0.9"),         # its own peer's BYE
    (req("ACK", call_id="live", to_tag="w1"), "10.0.0.9"),
    (req("INVITE", call_id="live", to_tag="w1"), "10.0.0.9"),      # a re-INVITE from the peer
    (req("BYE", call_id="other", to_tag="w1"), "10.0.0.66"),       # unknown dialog: pjsua 481s
    (req("OPTIONS"), "10.0.0.66"),
])
def test_ordinary_requests_pass(screen, text, source):
    assert screen.request(text, source).passes


def test_a_tag_inside_the_to_uri_is_not_a_to_tag(screen):
    ack = req("ACK", call_id="x").replace("To: <sip:+15552345678@w>", "To: <sip:a@w;tag=1>")
    assert screen.request(ack, "10.0.0.9").rule is Rule.STRAY_ACK


def test_a_placed_call_learns_its_peer_from_the_first_answer_and_forgets_it_when_gone(screen):
    screen.dialled("out")
    screen.answered("out", "192.0.2.5")
    screen.answered("out", "10.0.0.66")                   # a later, spoofed answer changes nothing
    bye = req("BYE", call_id="out", to_tag="k")
    assert screen.request(bye, "10.0.0.66").rule is Rule.OFF_PATH
    assert screen.request(bye, "192.0.2.5").passes
    screen.forget("out")
    assert screen.dialogs == 1
    assert screen.request(bye, "10.0.0.66").passes        # unknown now: pjsua answers 481


def test_a_flooding_source_is_shed_without_starving_another_or_a_dialogs_peer():
    clock = Clock()
    s = Screen(clock, ScreenSettings(source_rate=10, source_burst=20, dialog_rate=5,
                                     dialog_burst=5))
    s.admit("live", "10.0.0.9")
    shed = [s.request(req("OPTIONS"), "10.0.0.66").rule for _ in range(100)]
    assert shed.count(None) == 20 and shed.count(Rule.FLOOD) == 80
    assert s.request(req("OPTIONS"), "10.0.0.7").passes            # another source
    # The flooder is also the dialog's peer's address? No: the peer speaks from 10.0.0.9.
    for _ in range(30):
        s.request(req("OPTIONS"), "10.0.0.9")                    # the peer floods out of dialog
    assert s.request(req("BYE", call_id="live", to_tag="w"), "10.0.0.9").passes
    clock.now = 1.0                                              # a second later: 10 more
    refilled = [s.request(req("OPTIONS"), "10.0.0.66").passes for _ in range(15)]
    assert refilled.count(True) == 10


def test_token_buckets_are_bounded():
    s = Screen(Clock(), ScreenSettings(sources_max=50))
    for i in range(500):
        s.request(req(), f"10.1.{i // 256}.{i % 256}")
    assert len(s._buckets) == 50


def test_call_id_of_any_message_compact_form_too():
    assert parse_call_id("SIP/2.0 200 OK\r\ni: abc@h\r\n\r\n") == "abc@h"
    assert parse_call_id("SIP/2.0 200 OK\r\n\r\nCall-ID: body") == ""


def test_a_folded_header_line_is_not_a_header():
    r = parse_request(req() + "").headers
    assert "replaces" not in r
    folded = req(extra="Subject: hi\r\n Replaces: x\r\n")
    assert "replaces" not in parse_request(folded).headers


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=600), st.sampled_from(["10.0.0.9", "10.0.0.66", "", "::1"]))
def test_no_datagram_makes_the_screen_raise(text, source):
    s = Screen(Clock())
    s.admit("live", "10.0.0.9")
    v = s.request(text, source)
    assert v.passes or isinstance(v.rule, Rule)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["REFER", "ACK", "BYE", "INVITE"]), st.text(
    alphabet=st.characters(blacklist_characters="\r\n"), max_size=40))
def test_mutated_headers_never_open_a_refer_or_replaces(method, noise):
    s = Screen(Clock())
    text = req(method, extra=f"X-Noise: {noise}\r\nReplaces: a;to-tag=b;from-tag=c\r\n")
    v = s.request(text, "10.0.0.9")
    if method in ("REFER", "INVITE"):
        assert v.code == 403


def test_a_new_invite_is_refused_503_before_pjsua_when_there_is_no_room_but_a_known_one_passes():
    room = {"free": False}
    s = Screen(Clock(), admitting=lambda: room["free"])
    s.admit("live", "10.0.0.9")
    v = s.request(req(call_id="new"), "10.0.0.9")
    assert (v.rule, v.code) == (Rule.FULL, 503)
    assert s.request(req(call_id="live"), "10.0.0.9").passes        # a retransmission
    room["free"] = True
    assert s.request(req(call_id="new"), "10.0.0.9").passes


def test_new_calls_are_bounded_worker_wide_whatever_their_sources():
    clock = Clock()
    s = Screen(clock, ScreenSettings(call_rate=10, call_burst=10))
    verdicts = [s.request(req(call_id=f"c{i}"), f"10.2.0.{i}") for i in range(30)]
    assert [v.rule for v in verdicts].count(Rule.CALL_RATE) == 20
    assert {v.code for v in verdicts if v.rule} == {503}
    assert s.request(req("OPTIONS"), "10.2.0.99").passes           # other requests are not
    clock.now = 0.5
    assert [s.request(req(call_id=f"d{i}"), "10.3.0.1").passes for i in range(6)].count(True) == 5


def test_a_dialogs_peer_flooding_its_own_dialog_is_shed_but_its_bye_always_passes():
    s = Screen(Clock(), ScreenSettings(dialog_rate=5, dialog_burst=5))
    s.admit("live", "10.0.0.9")
    info = req("INFO", call_id="live", to_tag="w")
    shed = [s.request(info, "10.0.0.9").rule for _ in range(50)]
    assert shed.count(Rule.FLOOD) == 45
    assert s.request(req("BYE", call_id="live", to_tag="w"), "10.0.0.9").passes
    assert s.request(req("BYE", call_id="live", to_tag="w"), "10.0.0.66").rule is Rule.OFF_PATH
