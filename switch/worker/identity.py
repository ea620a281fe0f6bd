"""Where a kiosk call comes from, as the worker tells the core: the INVITE's transport source,
or, only when that source is one of the node's edge proxies (Kamailio), the kiosk address the edge
wrote into its source header (the edge removes any such header a sender wrote).

A header from anywhere else is ignored, and a malformed one from the edge leaves the edge's own
address, which no kiosk's registered sources contain: the core then refuses the call.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["EdgeTrust", "kiosk_source"]


@dataclass(frozen=True)
class EdgeTrust:
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    header: str = "X-ICS-Kiosk-Source"

    @classmethod
    def parse(cls, addresses: Iterable[str], header: str) -> "EdgeTrust":
        """From config: each address an IP or CIDR; a bad one raises ValueError naming it."""
        nets = []
        for a in addresses:
            try:
                nets.append(ipaddress.ip_network(a.strip(), strict=False))
            except ValueError:
                raise ValueError(f"worker.edge_addresses: {a!r} is not an IP address or network"
                                 ) from None
        if not header.strip():
            raise ValueError("worker.source_header must name a header")
        return cls(tuple(nets), header.strip())

    def is_edge(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self.networks)


def kiosk_source(transport_ip: str, headers: dict[str, str], trust: EdgeTrust) -> str:
    """The address the core judges the kiosk by (see the module docstring)."""
    if not trust.is_edge(transport_ip):
        return transport_ip
    said = headers.get(trust.header.lower(), "").strip()
    try:
        return str(ipaddress.ip_address(said))
    except ValueError:
        return transport_ip
