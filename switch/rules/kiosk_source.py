"""A kiosk's identity from the network: the source networks (CIDRs) it may call from.

Trust comes from the address the kiosk's packets arrived from (the worker reads it from the
transport, never from a header), matched against the networks registered for the kiosk it claims
to be. Pure: no I/O; the core reads the kiosk row, then asks `admits`.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from switch.errors import SwitchError

__all__ = ["SourceError", "Network", "parse_sources", "parse_source_ip", "admits",
           "SOURCES_PER_KIOSK_MAX"]

SOURCES_PER_KIOSK_MAX = 64      # a kiosk is a phone or an ATA: a handful of networks at most

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class SourceError(SwitchError, ValueError):
    """A source network or address is not usable; the message names the value and where."""


def parse_sources(texts: Iterable[str] | str) -> tuple[Network, ...]:
    """'10.1.2.0/24, 10.9.9.9' (or a list of such) -> networks; a bare address is a /32 (/128).

    Host bits set under the mask ('10.1.2.3/24') are refused: the operator most likely meant
    either the host or the network, and guessing would admit the wrong one."""
    if isinstance(texts, str):
        texts = [texts]
    items = [part.strip() for text in texts for part in text.split(",")]
    out: list[Network] = []
    for i, item in enumerate(items):
        if not item:
            raise SourceError(f"source #{i + 1} is empty")
        try:
            net = ipaddress.ip_network(item, strict=True)
        except ValueError as e:
            raise SourceError(f"source #{i + 1} {item!r} is not an address or CIDR network: "
                              f"{e}") from None
        if getattr(net.network_address, "scope_id", None):
            raise SourceError(f"source #{i + 1} {item!r} has a zone (%...): give the network alone")
        if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped is not None:
            # A kiosk's IPv4 peer is matched as IPv4 (parse_source_ip unmaps it): this network
            # would never admit anyone.
            raise SourceError(f"source #{i + 1} {item!r} is an IPv4-mapped IPv6 network: give "
                              f"the IPv4 network ({net.network_address.ipv4_mapped}) instead")
        if net not in out:
            out.append(net)
    if len(out) > SOURCES_PER_KIOSK_MAX:
        raise SourceError(f"at most {SOURCES_PER_KIOSK_MAX} sources per kiosk, got {len(out)}")
    return tuple(out)


def parse_source_ip(text: str | None) -> Address | None:
    """The address a worker saw, or None if absent or unparseable (which never matches)."""
    if not text:
        return None
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    # An IPv4 peer on a dual-stack socket shows as ::ffff:a.b.c.d.
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def admits(sources: Iterable[Network], source_ip: Address | None) -> bool:
    """True when `source_ip` lies inside one of `sources`. No address never matches."""
    if source_ip is None:
        return False
    return any(source_ip.version == net.version and source_ip in net for net in sources)
