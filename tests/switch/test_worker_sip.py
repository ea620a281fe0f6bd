"""What the worker reads from an INVITE and how it names a call's end (no network)."""
from __future__ import annotations

import pytest

from switch.wire import protocol as wire
from switch.worker.call import disposition_for, preset_number, trusted_request
from switch.worker.media import parse_invite

INVITE = ("INVITE sip:+15552345678@127.0.0.1:5070 SIP/2.0\r\n"
          "Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n"
          "f: \"Kiosk\" <sip:kiosk-7@10.0.0.9>;tag=abc\r\n"
          "To: <sip:+15552345678@127.0.0.1>\r\n"
          "X-ICS-PIN: 10011234\r\n"
          "X-ICS-PIN: 99999999\r\n"
          "Content-Length: 0\r\n\r\nv=0\r\nX-ICS-PIN: body-is-not-a-header\r\n")


def test_invite_gives_request_user_kiosk_identity_and_first_header_value():
    inv = parse_invite(INVITE, "127.0.0.1:5062")
    assert inv.request_user == "+15552345678"
    assert inv.from_user == "kiosk-7"               # compact From header understood
    assert inv.headers["x-ics-pin"] == "10011234"   # first value wins; the body is not read
    assert inv.source == "127.0.0.1:5062"


def test_trusted_kiosk_needs_both_pin_header_and_a_number_in_the_request_uri():
    assert trusted_request(parse_invite(INVITE, ""), "X-ICS-PIN") == ("10011234", "+15552345678")
    no_number = INVITE.replace("INVITE sip:+15552345678@", "INVITE sip:ivr@")
    assert trusted_request(parse_invite(no_number, ""), "X-ICS-PIN") is None
    assert trusted_request(parse_invite(INVITE, ""), "X-Other-PIN") is None


@pytest.mark.parametrize("user,keyed", [("+15552345678", "15552345678"),
                                        ("+442071234567", "011442071234567"),
                                        ("5552345678", "5552345678")])
def test_request_uri_number_becomes_what_the_inmate_would_key(user, keyed):
    assert preset_number(user) == keyed


@pytest.mark.parametrize("reason,disposition", [
    ("refused", "refused"), ("blocked", "blocked"), ("no_response", "no_answer"),
    ("hung_up", "no_answer"), ("busy", "busy"), ("insufficient_funds", "denied"),
    ("system_unavailable", "failed"), ("not_approved", "denied"), ("pin_locked", "denied"),
    ("no_input", "abandoned"), ("something_new", "failed")])
def test_every_flow_hangup_reason_is_reported_as_a_known_disposition(reason, disposition):
    assert disposition_for(reason) == disposition
    assert disposition in wire.DISPOSITIONS


@pytest.mark.parametrize("argv,complaint", [
    (["--sip-port", "0"], "--sip-port"),
    (["--rtp-port-min", "30000", "--rtp-port-max", "20000"], "--rtp-port-min/--rtp-port-max"),
    (["--core", "127.0.0.1:7070"], "--core must be"),
])
def test_worker_command_line_names_the_bad_option(argv, complaint, capsys):
    from switch.worker.__main__ import parse_args
    base = {"--worker-id": "w1", "--sip-port": "5070", "--rtp-port-min": "20000",
            "--rtp-port-max": "20099", "--core": "tcp:127.0.0.1:7070"}
    base.update(dict(zip(argv[::2], argv[1::2])))
    with pytest.raises(SystemExit):
        parse_args([x for kv in base.items() for x in kv])
    assert complaint in capsys.readouterr().err


@pytest.mark.parametrize("value,user", [
    ('"Kiosk" <sip:kiosk-7@10.0.0.9>;tag=abc', "kiosk-7"),
    ('"<sip:kiosk-1@x>" <sip:kiosk-7@10.0.0.9>;tag=abc', "kiosk-7"),    # URI inside the name
    ('"a \\" <sip:kiosk-1@x>" <sip:kiosk-7@h>', "kiosk-7"),              # escaped quote
    ("sip:kiosk-7@10.0.0.9;tag=abc", "kiosk-7"),
    ("<sips:kiosk-7@h:5061;transport=tls>", "kiosk-7"),
    ("<tel:+15551234567;phone-context=x>", "+15551234567"),
    ('"<sip:kiosk-1@x>"', ""),                                          # a name, no URI
    ('"unterminated <sip:kiosk-1@x>', ""),
    ("Kiosk sip:kiosk-1@x", ""),                                          # no brackets, junk
    ('x"y" <sip:kiosk-1@h>', ""),
    ("<sip:h>", ""), ("", ""), ("<sip:kiosk-1@h", ""),
])
def test_the_kiosk_is_the_user_of_the_from_uri_and_nothing_else(value, user):
    from switch.worker.media import from_user
    assert from_user(value) == user


def test_a_display_name_cannot_claim_a_kiosk():
    spoof = INVITE.replace('f: "Kiosk" <sip:kiosk-7@10.0.0.9>',
                           'f: "sip:kiosk-1@x <sip:kiosk-1@x>" <sip:kiosk-7@10.0.0.9>')
    assert parse_invite(spoof, "10.0.0.9:5060").from_user == "kiosk-7"


@pytest.mark.parametrize("source,ip", [("10.0.0.9:5060", "10.0.0.9"), ("[::1]:5060", "::1"),
                                       ("10.0.0.9", "10.0.0.9")])
def test_the_source_ip_is_the_transport_address_without_its_port(source, ip):
    assert parse_invite(INVITE, source).source_ip == ip
