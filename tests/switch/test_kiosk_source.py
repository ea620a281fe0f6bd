"""The kiosk's address as the worker reports it to the core: the transport's, or the edge's word
for it only when the INVITE came from the edge."""
from switch.worker.call import CallSettings, kiosk_source_ip
from switch.worker.media import Incoming

EDGE = CallSettings(edge_addresses=("127.0.0.4",))


def incoming(source: str, **headers: str) -> Incoming:
    return Incoming("+15551234567", "kiosk-a1", {k.lower(): v for k, v in headers.items()}, source)


def test_a_direct_invite_is_where_its_transport_says():
    assert kiosk_source_ip(incoming("10.1.2.3:5060"), EDGE) == "10.1.2.3"


def test_a_kiosk_cannot_claim_another_address_with_the_edge_header():
    forged = incoming("10.1.2.3:5060", **{"x-ics-kiosk-source": "10.9.9.9"})
    assert kiosk_source_ip(forged, EDGE) == "10.1.2.3"
    assert kiosk_source_ip(forged, CallSettings()) == "10.1.2.3"


def test_an_invite_relayed_by_the_edge_is_where_the_edge_says():
    relayed = incoming("127.0.0.4:5060", **{"X-ICS-Kiosk-Source": " 10.1.2.3 "})
    assert kiosk_source_ip(relayed, EDGE) == "10.1.2.3"


def test_an_edge_invite_without_a_usable_source_names_no_address():
    assert kiosk_source_ip(incoming("127.0.0.4:5060"), EDGE) == ""
    for bad in ("", "kiosk-a1", "10.1.2.3:5060", "10.1.2.3, 10.9.9.9", "999.1.1.1"):
        assert kiosk_source_ip(incoming("127.0.0.4:5060", **{"x-ics-kiosk-source": bad}),
                               EDGE) == "", bad


def test_the_header_name_is_configurable():
    s = CallSettings(edge_addresses=("::1",), source_header="X-Edge-Src")
    assert kiosk_source_ip(incoming("[::1]:5060", **{"x-edge-src": "2001:db8::7"}), s) == \
        "2001:db8::7"
