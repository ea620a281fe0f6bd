"""The front door's answers, decided from datagrams alone: a fake transport and a task.Clock."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from twisted.internet import task

from switch.processes.frontdoor import Admission, FrontDoor, SourceLimiter, parse_message
from switch.processes.supervisor import WorkerTable

KIOSK = ("10.1.2.3", 5062)


class Wire:
    """Collects what the front door sends."""

    def __init__(self):
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data, addr):
        self.sent.append((data, addr))


def request(method="INVITE", uri="sip:15551234567@10.0.0.1:5060", *, via=None, to_tag=None,
            call_id="call-1@kiosk", cseq=None, max_forwards="70", drop=(), extra=(), body=""):
    headers = [
        ("Via", via or "SIP/2.0/UDP 10.1.2.3:5062;branch=z9hG4bK-1;rport"),
        ("Max-Forwards", max_forwards),
        ("From", '"Kiosk 1" <sip:kiosk1@10.1.2.3>;tag=k1'),
        ("To", "<sip:15551234567@10.0.0.1>" + (f";tag={to_tag}" if to_tag else "")),
        ("Call-ID", call_id),
        ("CSeq", cseq or f"1 {method}"),
        *extra,
        ("Content-Length", str(len(body))),
    ]
    lines = [f"{method} {uri} SIP/2.0"] + [f"{k}: {v}" for k, v in headers
                                           if k not in drop and v is not None]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


@pytest.fixture
def clock():
    c = task.Clock()
    c.advance(1000.0)
    return c


@pytest.fixture
def table(clock):
    t = WorkerTable(slot_reservation_seconds=5.0, default_host="10.0.0.1")
    for i, wid in enumerate(("w1", "w2")):
        t.spawned(wid, host="10.0.0.1", sip_port=5071 + i, pid=1, now=clock.seconds())
        t.hello(wid, capacity=2, sip_port=5071 + i, pid=1, now=clock.seconds())
    return t


@pytest.fixture
def door(table, clock):
    d = FrontDoor(table, clock, retry_after_seconds=7, rate_per_second=20.0, burst=40,
                  sources_max=100, registry=CollectorRegistry())
    d.transport = Wire()
    return d


def send(door, data, source=KIOSK):
    before = len(door.transport.sent)
    door.datagramReceived(data, source)
    new = door.transport.sent[before:]
    assert len(new) <= 1
    if not new:
        return None, None
    payload, addr = new[0]
    return parse_message(payload), addr


def count(door, name, **labels):
    metric = door.requests_total if name == "requests" else door.dropped_total
    return metric.labels(**labels)._value.get()


def test_a_new_invite_is_redirected_to_a_worker_keeping_the_dialled_number(door):
    resp, addr = send(door, request(body="v=0\r\n", extra=[("X-ICS-PIN", "1234")]))
    assert resp.code == 302 and resp.phrase == "Moved Temporarily"
    assert resp.headers["contact"] == ["<sip:15551234567@10.0.0.1:5071>"]
    assert resp.headers["from"] == ['"Kiosk 1" <sip:kiosk1@10.1.2.3>;tag=k1']
    assert resp.headers["call-id"] == ["call-1@kiosk"]
    assert resp.headers["cseq"] == ["1 INVITE"]
    to = resp.headers["to"][0]
    assert to.startswith("<sip:15551234567@10.0.0.1>;tag=") and len(to.split("tag=")[1]) == 16
    assert resp.headers["content-length"] == ["0"] and resp.body == ""
    # rport asked for: the answer goes back to the source address and port, and says so
    assert resp.headers["via"] == [
        "SIP/2.0/UDP 10.1.2.3:5062;branch=z9hG4bK-1;received=10.1.2.3;rport=5062"]
    assert addr == KIOSK
    assert count(door, "requests", method="INVITE", response="302") == 1


def test_a_burst_of_invites_is_spread_over_the_workers(door):
    contacts = [send(door, request(call_id=f"c{i}"))[0].headers["contact"][0] for i in range(4)]
    assert sorted(contacts) == sorted(["<sip:15551234567@10.0.0.1:5071>"] * 2
                                      + ["<sip:15551234567@10.0.0.1:5072>"] * 2)


def test_with_every_worker_full_an_invite_gets_503_with_retry_after(door, table, clock):
    for wid in ("w1", "w2"):
        table.heartbeat(wid, [f"{wid}-a", f"{wid}-b"], clock.seconds())
    resp, _ = send(door, request())
    assert resp.code == 503 and resp.headers["retry-after"] == ["7"]
    assert "contact" not in resp.headers and ";tag=" in resp.headers["to"][0]
    assert count(door, "requests", method="INVITE", response="503") == 1


def test_a_retransmitted_invite_gets_the_same_answer_and_uses_one_slot(door, table, clock):
    first = door.transport.sent[:]
    send(door, request())
    send(door, request())
    (a, _), (b, _) = door.transport.sent[len(first):]
    assert a == b
    assert sum(w.reserved(clock.seconds()) for w in table) == 1
    other, _ = send(door, request(call_id="call-2@kiosk"))
    assert other.headers["to"][0].split("tag=")[1] != parse_message(a).headers["to"][0].split(
        "tag=")[1]


def test_an_invite_without_a_user_is_redirected_to_the_worker_itself(door):
    resp, _ = send(door, request(uri="sip:10.0.0.1:5060"))
    assert resp.headers["contact"] == ["<sip:10.0.0.1:5071>"]


def test_options_is_answered_with_what_the_front_door_allows(door):
    resp, _ = send(door, request("OPTIONS", uri="sip:10.0.0.1"))
    assert resp.code == 200
    assert resp.headers["allow"] == ["INVITE, ACK, CANCEL, OPTIONS"]


def test_ack_to_our_answer_is_absorbed(door):
    resp, _ = send(door, request("ACK", to_tag="abc"))
    assert resp is None
    assert count(door, "requests", method="ACK", response="absorbed") == 1


def test_cancel_is_answered_200(door):
    resp, _ = send(door, request("CANCEL"))
    assert resp.code == 200 and resp.headers["cseq"] == ["1 CANCEL"]


@pytest.mark.parametrize("method", ["BYE", "INVITE", "INFO", "UPDATE"])
def test_an_in_dialog_request_gets_481_we_hold_no_dialogs(door, method, table, clock):
    resp, _ = send(door, request(method, to_tag="not-ours"))
    assert resp.code == 481
    assert resp.headers["to"] == ["<sip:15551234567@10.0.0.1>;tag=not-ours"]
    assert sum(w.reserved(clock.seconds()) for w in table) == 0


def test_a_bye_without_a_dialog_is_481_too(door):
    assert send(door, request("BYE"))[0].code == 481


def test_max_forwards_zero_is_too_many_hops(door, table, clock):
    assert send(door, request(max_forwards="0"))[0].code == 483
    assert sum(w.reserved(clock.seconds()) for w in table) == 0


@pytest.mark.parametrize("kwargs,phrase", [
    (dict(drop=("Call-ID",)), "Missing Call-ID"),
    (dict(drop=("From",)), "Missing From"),
    (dict(drop=("To",)), "Missing To"),
    (dict(drop=("CSeq",)), "Missing CSeq"),
    (dict(cseq="1 BYE"), "Bad CSeq"),
    (dict(cseq="one INVITE"), "Bad CSeq"),
    (dict(max_forwards="many"), "Bad Max-Forwards"),
    (dict(uri="sip:15551234567>evil@10.0.0.1"), "Bad Request-URI user"),
])
def test_a_request_missing_or_garbling_a_mandatory_header_gets_400_naming_it(door, kwargs, phrase,
                                                                           table, clock):
    resp, _ = send(door, request(**kwargs))
    assert (resp.code, resp.phrase) == (400, phrase)
    assert sum(w.reserved(clock.seconds()) for w in table) == 0


def test_register_is_not_allowed_and_an_unknown_method_not_implemented(door):
    resp, _ = send(door, request("REGISTER", uri="sip:10.0.0.1"))
    assert resp.code == 405 and resp.headers["allow"] == ["INVITE, ACK, CANCEL, OPTIONS"]
    assert send(door, request("FROB", uri="sip:10.0.0.1"))[0].code == 501
    assert count(door, "requests", method="other", response="501") == 1


def test_without_rport_the_answer_goes_to_the_via_port_at_the_source_address(door):
    resp, addr = send(door, request(via="SIP/2.0/UDP kiosk7.facility.example:5070;branch=z9hG4bK-9"),
                      source=("10.1.2.7", 40000))
    assert addr == ("10.1.2.7", 5070)
    assert resp.headers["via"] == [
        "SIP/2.0/UDP kiosk7.facility.example:5070;branch=z9hG4bK-9;received=10.1.2.7"]


def test_a_via_matching_the_source_is_left_as_sent(door):
    resp, addr = send(door, request(via="SIP/2.0/UDP 10.1.2.3;branch=z9hG4bK-2"))
    assert addr == ("10.1.2.3", 5060)
    assert resp.headers["via"] == ["SIP/2.0/UDP 10.1.2.3;branch=z9hG4bK-2"]


def test_every_via_is_copied_in_order(door):
    data = request(via="SIP/2.0/UDP 10.1.2.3:5062;branch=z9hG4bK-a, SIP/2.0/UDP 10.9.9.9;branch=b",
                   extra=[("Via", "SIP/2.0/UDP 10.8.8.8;branch=c")])
    resp, _ = send(door, data)
    assert resp.headers["via"] == ["SIP/2.0/UDP 10.1.2.3:5062;branch=z9hG4bK-a",
                                   "SIP/2.0/UDP 10.9.9.9;branch=b",
                                   "SIP/2.0/UDP 10.8.8.8;branch=c"]


@pytest.mark.parametrize("garbage", [
    b"\x00\x01\x02\xff" * 50,
    b"hello world",
    b"INVITE sip:x@y SIP/2.0\r\n",                       # no end of headers
    b"INVITE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4\r\nContent-Length: 50\r\n\r\nshort",
    b"INVITE tel:+15551234567 SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4\r\n\r\n",
    b"INVITE sip:x@y SIP/2.0\r\nCall-ID: no-via\r\n\r\n",
    b"INVITE sip:x@y SIP/2.0\r\nVia: HTTP/1.1 1.2.3.4\r\n\r\n",
    b"INVITE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4:notaport\r\n\r\n",
    b"INVITE sip:x@y SIP/2.0\r\nContent-Length: -1\r\n\r\n",
    b"INVITE sip:x@y SIP/2.0\r\nno colon here\r\n\r\n",
    b"\xc3\x28 sip:x@y SIP/2.0\r\n\r\n",
    request() + request(call_id="two-in-one"),
])
def test_garbage_is_dropped_and_counted_and_the_door_still_answers(door, garbage):
    assert send(door, garbage) == (None, None)
    assert count(door, "dropped", reason="unparseable") == 1
    assert count(door, "dropped", reason="internal_error") == 0
    assert send(door, request("OPTIONS"))[0].code == 200


def test_a_response_sent_to_the_front_door_is_dropped(door):
    data = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=x\r\nContent-Length: 0\r\n\r\n"
    assert send(door, data) == (None, None)
    assert count(door, "dropped", reason="response") == 1


def test_keepalive_crlf_is_ignored(door):
    assert send(door, b"\r\n\r\n") == (None, None)
    assert count(door, "dropped", reason="keepalive") == 1


def test_a_flood_from_one_source_is_cut_to_its_bucket_while_others_are_served(door, clock):
    answered = sum(1 for i in range(1000)
                   if send(door, request("OPTIONS", call_id=f"f{i}"))[0] is not None)
    assert answered == 40
    assert count(door, "dropped", reason="rate_limited") == 960
    assert send(door, request("OPTIONS"), source=("10.1.2.4", 5062))[0].code == 200
    clock.advance(0.5)       # 20/s refills 10 tokens
    assert sum(1 for i in range(20)
               if send(door, request("OPTIONS", call_id=f"g{i}"))[0] is not None) == 10


def test_the_limiter_refuses_beyond_the_burst_and_says_so_once():
    lim = SourceLimiter(rate_per_second=1.0, burst=2, sources_max=10)
    assert [lim.allow("a", 0.0) for _ in range(4)] == [
        Admission.ADMITTED, Admission.ADMITTED, Admission.REFUSED_FIRST, Admission.REFUSED]
    assert lim.allow("a", 1.0) is Admission.ADMITTED
    assert lim.allow("a", 1.0) is Admission.REFUSED_FIRST


def test_the_limiter_forgets_the_least_recent_source_beyond_its_bound():
    lim = SourceLimiter(rate_per_second=1.0, burst=1, sources_max=3)
    for src in ("a", "b", "c"):
        lim.allow(src, 0.0)
    lim.allow("a", 0.0)          # a is refused, and now the most recent
    lim.allow("d", 0.0)          # b is forgotten
    assert len(lim) == 3
    assert lim.allow("b", 0.0) is Admission.ADMITTED    # a fresh bucket
    assert lim.allow("a", 0.0) is Admission.REFUSED


def accounted(door):
    """Datagrams answered, absorbed or dropped, by the metrics."""
    return sum(s.value for m in (door.requests_total, door.dropped_total)
               for s in next(iter(m.collect())).samples if s.name.endswith("_total"))


_FIXTURES_OK = settings(max_examples=300, deadline=None,
                        suppress_health_check=[HealthCheck.function_scoped_fixture])


@_FIXTURES_OK
@given(data=st.binary(max_size=600))
def test_arbitrary_bytes_never_break_the_front_door(door, clock, data):
    clock.advance(1.0)       # refill the bucket: every example reaches the parser
    before = accounted(door)
    door.datagramReceived(data, KIOSK)
    assert accounted(door) == before + 1
    assert count(door, "dropped", reason="internal_error") == 0
    assert count(door, "dropped", reason="rate_limited") == 0


@_FIXTURES_OK
@given(cut=st.integers(0, 400), junk=st.binary(max_size=8), at=st.integers(0, 400))
def test_mangled_invites_are_answered_or_dropped_never_crash(door, clock, cut, junk, at):
    clock.advance(1.0)
    base = request(body="v=0\r\n")
    mangled = base[:at] + junk + base[at:][:cut]
    before = accounted(door)
    door.datagramReceived(mangled, KIOSK)
    assert accounted(door) == before + 1
    assert count(door, "dropped", reason="internal_error") == 0
    assert count(door, "dropped", reason="rate_limited") == 0
