"""Which source the worker reports for a kiosk call (switch.worker.identity), without I/O."""
from __future__ import annotations

import pytest

from switch.worker.identity import EdgeTrust, kiosk_source

EDGE = EdgeTrust.parse(["10.20.0.5", "10.30.0.0/24"], "X-ICS-Kiosk-Source")
SAID = {"x-ics-kiosk-source": "192.168.7.20"}


@pytest.mark.parametrize("transport,headers,reported", [
    ("10.20.0.5", SAID, "192.168.7.20"),                      # the edge says who it was
    ("10.30.0.9", SAID, "192.168.7.20"),                      # an edge network
    ("192.168.7.99", SAID, "192.168.7.99"),                   # a kiosk cannot say it itself
    ("10.20.0.6", SAID, "10.20.0.6"),
    ("10.20.0.5", {}, "10.20.0.5"),                           # the edge said nothing
    ("10.20.0.5", {"x-ics-kiosk-source": "192.168.7.20, 1.2.3.4"}, "10.20.0.5"),
    ("10.20.0.5", {"x-ics-kiosk-source": "evil"}, "10.20.0.5"),
    ("10.20.0.5", {"x-ics-kiosk-source": " 2001:db8::7 "}, "2001:db8::7"),
    ("not-an-ip", SAID, "not-an-ip"),
])
def test_the_source_header_counts_only_from_an_edge_address(transport, headers, reported):
    assert kiosk_source(transport, headers, EDGE) == reported


def test_without_edges_configured_the_transport_source_is_all_there_is():
    assert kiosk_source("10.20.0.5", SAID, EdgeTrust()) == "10.20.0.5"


@pytest.mark.parametrize("addresses,header,complaint", [
    (["10.0.0.300"], "X-ICS-Kiosk-Source", "'10.0.0.300' is not an IP address or network"),
    (["kamailio.local"], "X-ICS-Kiosk-Source", "'kamailio.local'"),
    ([], " ", "source_header"),
])
def test_a_bad_edge_setting_is_named(addresses, header, complaint):
    with pytest.raises(ValueError, match=complaint):
        EdgeTrust.parse(addresses, header)
