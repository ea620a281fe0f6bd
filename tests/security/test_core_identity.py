"""Hostile tests of who a kiosk is: identity comes from the source address the worker saw, never
from the message. A caller outside the claimed kiosk's registered networks is refused (CheckPin and
Authorize), audited and counted; the PIN header counts only for trusted kiosks from their own
networks. Real PostgreSQL, the core's real AMP responder."""
import ipaddress

import pytest
from hypothesis import given, strategies as st

from switch.wire import protocol as wire
from switch.provisioning.directory import Invalid, add_kiosk
from switch.rules.kiosk_source import SourceError, admits, parse_source_ip, parse_sources

from tests.security.core_edge import (  # noqa: F401  (reactor, rig: fixtures)
    audit, metric, pin_outcomes, reactor, rig, set_kiosk)

MOM = "+19515550101"
JOHN = "10001"
JOHN_PIN = "100011234"
KIOSK_NET = "10.1.2.0/24"
INSIDE, OUTSIDE = "10.1.2.7", "10.9.9.9"


async def test_a_pin_from_outside_the_kiosk_s_networks_is_refused_audited_and_counted(rig):
    await set_kiosk(rig, "kiosk-a1", sources=[KIOSK_NET])
    with pytest.raises(wire.KioskUnknown, match="kiosk_source_mismatch"):
        await rig.call(wire.CheckPin, kiosk="kiosk-a1", pin=JOHN_PIN, source_ip=OUTSIDE)
    assert await pin_outcomes(rig) == ["source_mismatch"]     # the secret was never tried
    [row] = await audit(rig, "kiosk_source_mismatch")
    assert (row["kiosk"], str(row["source_ip"]), row["actor"]) == ("kiosk-a1", OUTSIDE, "core")
    assert metric(rig, "ics_kiosk_source_mismatch_total", {"command": "check_pin"}) == 1


async def test_admission_before_answering_refuses_a_stranger_and_an_unknown_kiosk(rig):
    await set_kiosk(rig, "kiosk-a1", sources=[KIOSK_NET])
    arrivals = []                               # what the front door hears (ops.node wires it)
    rig.port.factory.on_kiosk_arrived = arrivals.append
    with pytest.raises(wire.KioskUnknown, match="kiosk_source_mismatch"):
        await rig.call(wire.AdmitKiosk, kiosk="kiosk-a1", source_ip=OUTSIDE)
    [row] = await audit(rig, "kiosk_source_mismatch")
    assert (row["kiosk"], str(row["source_ip"]), row["detail"]) == (
        "kiosk-a1", OUTSIDE, '{"command": "admit_kiosk"}')
    assert metric(rig, "ics_kiosk_source_mismatch_total", {"command": "admit_kiosk"}) == 1
    with pytest.raises(wire.KioskUnknown, match="no-such-kiosk"):
        await rig.call(wire.AdmitKiosk, kiosk="no-such-kiosk", source_ip=INSIDE)
    assert (await rig.call(wire.AdmitKiosk, kiosk="kiosk-a1", source_ip=INSIDE))["admitted"]
    assert await pin_outcomes(rig) == []              # admission is not a PIN attempt
    # Each call's first question ends its redirect's pending state; a keyed PIN is no arrival.
    await rig.call(wire.CheckPin, kiosk="kiosk-a1", pin=JOHN_PIN, source="dtmf", source_ip=INSIDE)
    assert arrivals == [OUTSIDE, INSIDE, INSIDE]


async def test_an_authorize_from_outside_the_kiosk_s_networks_is_refused_and_no_call_exists(rig):
    await set_kiosk(rig, "kiosk-a1", sources=[KIOSK_NET])
    session = await rig.pin_session("kiosk-a1", JOHN, INSIDE)       # a PIN keyed legitimately
    a = await rig.call(wire.Authorize, kiosk="kiosk-a1", inmate_id=JOHN, number=MOM,
                       source_ip=OUTSIDE, pin_session=session)
    assert (a["allow"], a["reason"]) == (False, "kiosk_source_mismatch")
    [row] = await audit(rig, "kiosk_source_mismatch")
    assert (row["inmate_id"], row["detail"]) == (JOHN, '{"command": "authorize"}')
    assert metric(rig, "ics_authorizations_total", {"outcome": "kiosk_source_mismatch"}) == 1
    async with rig.pool.acquire() as c:
        assert await c.fetchval("SELECT count(*) FROM call") == 0


async def test_the_kiosk_from_inside_its_networks_is_served(rig):
    await set_kiosk(rig, "kiosk-a1", sources=[KIOSK_NET, "192.0.2.10"])
    for source in (INSIDE, "192.0.2.10", "::ffff:10.1.2.200"):
        a = await rig.call(wire.Authorize, kiosk="kiosk-a1", inmate_id=JOHN, number=MOM,
                           source_ip=source)
        assert a["allow"], (source, a)
        await rig.call(wire.End, call_id=a["call_id"], talk_seconds=0, disposition="abandoned")
    assert await audit(rig, "kiosk_source_mismatch") == []


@pytest.mark.parametrize("source_ip", [None, "", "not-an-address", "10.1.2", "2001:db8::1"])
async def test_a_missing_or_garbled_source_never_matches_a_kiosk_with_networks(rig, source_ip):
    await set_kiosk(rig, "kiosk-a1", sources=[KIOSK_NET])
    with pytest.raises(wire.KioskUnknown, match="kiosk_source_mismatch"):
        await rig.call(wire.CheckPin, kiosk="kiosk-a1", pin=JOHN_PIN, source_ip=source_ip)
    a = await rig.call(wire.Authorize, kiosk="kiosk-a1", inmate_id=JOHN, number=MOM,
                       source_ip=source_ip, pin_session=None)
    assert a["reason"] == "kiosk_source_mismatch"


async def test_a_node_that_requires_sources_refuses_a_kiosk_without_any(rig):
    import dataclasses
    rig.core.s = dataclasses.replace(rig.core.s, kiosk_source_required=True)
    with pytest.raises(wire.KioskUnknown, match="kiosk_source_mismatch"):
        await rig.call(wire.CheckPin, kiosk="kiosk-seg", pin=JOHN_PIN, source_ip=INSIDE)
    a = await rig.call(wire.Authorize, kiosk="kiosk-seg", inmate_id=JOHN, number=MOM,
                       source_ip=INSIDE, pin_session=None)
    assert a["reason"] == "kiosk_source_mismatch"


@pytest.mark.parametrize("trusted,sources,source_ip,outcome", [
    (False, [KIOSK_NET], INSIDE, "untrusted_kiosk"),     # not trusted with the header
    (True, None, INSIDE, "untrusted_kiosk"),             # trusted, but no network to match
    (True, [KIOSK_NET], OUTSIDE, "source_mismatch"),     # trusted, from elsewhere
    (True, [KIOSK_NET], INSIDE, "ok"),                   # the one way the header counts
])
async def test_the_pin_header_counts_only_from_a_trusted_kiosk_s_own_network(
        rig, trusted, sources, source_ip, outcome):
    await set_kiosk(rig, "kiosk-a1", sources=sources, trusted=trusted)
    try:
        a = await rig.call(wire.CheckPin, kiosk="kiosk-a1", pin=JOHN_PIN, source="sip_header",
                           source_ip=source_ip)
    except wire.KioskUnknown:
        a = None
    assert (a is not None and a["ok"]) is (outcome == "ok")
    assert await pin_outcomes(rig) == [outcome]
    if outcome != "ok":
        assert a is None or a.get("pin_session") is None


async def test_kiosk_sources_are_validated_at_input_and_a_bad_one_changes_nothing(rig):
    await set_kiosk(rig, "kiosk-a1", sources=[KIOSK_NET])
    for bad, names in ((["10.1.2.3/24"], "10.1.2.3/24"), (["10.1.2.0/33"], "10.1.2.0/33"),
                       (["ten.one"], "ten.one"), (["10.0.0.0/8, "], "source #2"),
                       (["fe80::1%eth0/128"], "fe80::1%eth0/128")):
        async with rig.pool.acquire() as c:
            with pytest.raises(Invalid, match="kiosk kiosk-a1 sources") as e:
                await add_kiosk(c, "kiosk-a1", "riverside", sources=bad, trusted=True)
            assert names in str(e.value)
            row = await c.fetchrow("SELECT sources, source, trusted FROM kiosk "
                                   "WHERE id = 'kiosk-a1'")
        assert ([str(n) for n in row["sources"]], row["trusted"]) == ([KIOSK_NET], False)
        assert str(row["source"]) == KIOSK_NET        # the older column, derived: the first one


def test_sources_parse_several_networks_and_bare_addresses():
    nets = parse_sources(["10.1.2.0/24, 192.0.2.10", "2001:db8::/32", "10.1.2.0/24"])
    assert [str(n) for n in nets] == ["10.1.2.0/24", "192.0.2.10/32", "2001:db8::/32"]
    with pytest.raises(SourceError, match="at most"):
        parse_sources([f"10.0.{i}.0/24" for i in range(65)])


@given(st.ip_addresses(v=4), st.integers(0, 32), st.ip_addresses(v=4))
def test_admits_is_exactly_network_membership(base, prefix, probe):
    net = ipaddress.ip_network(f"{base}/{prefix}", strict=False)
    assert admits([net], parse_source_ip(str(probe))) is (probe in net)


@given(st.ip_addresses(v=6))
def test_an_ipv6_source_never_matches_an_ipv4_network_unless_it_is_v4_mapped(addr):
    net = ipaddress.ip_network("0.0.0.0/0")
    assert admits([net], parse_source_ip(str(addr))) is (addr.ipv4_mapped is not None)
