"""Renders the production SIP edge: Kamailio's config and its kiosk and worker tables.

Pure functions from plain values (kiosk rows, worker addresses, edge settings) to file texts; the
`ics edge render` command (ops/commands/edge.py) reads the kiosk table and writes the files.

The kiosk table (config/kamailio/kamailio.cfg, permissions `address_file`) has one line per
source network: `1 ADDRESS PREFIXLEN 0 KIOSKS`, KIOSKS the ids registered there, comma-separated,
a trusted one followed by `+`. Kamailio admits an INVITE only when its source is inside a network
and its From user is one of that network's kiosks. Networks must not overlap (Kamailio would match
one of them only); kiosks sharing a source share one network, written once.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ops.errors import OpsError

__all__ = ["EdgeError", "EdgeSettings", "KioskRow", "WorkerAddress", "AddressTable",
           "address_table", "dispatcher_table", "render_config", "workers_of_nodes"]

KIOSK_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")        # what the edge accepts as a From user
HEADER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,63}")
TOPOH_KEY = re.compile(r"[A-Za-z0-9]{16,128}")
PERMISSIONS_GROUP = 1                                  # ICS_KIOSKS in kamailio.cfg
DISPATCHER_SET = 1                                     # ICS_WORKERS in kamailio.cfg
MSG_MAX_BYTES_MIN, MSG_MAX_BYTES_MAX = 1024, 65535


class EdgeError(OpsError, ValueError):
    """A value the edge cannot be rendered from; the message names it and says why."""


@dataclass(frozen=True)
class KioskRow:
    id: str
    source: str | None        # an address or a network (PostgreSQL inet as text); None: anywhere
    trusted: bool = False
    active: bool = True


@dataclass(frozen=True)
class WorkerAddress:
    host: str
    port: int
    calls_max: int            # the dispatcher's maxload: calls the worker holds at once
    duid: str


@dataclass(frozen=True)
class AddressTable:
    text: str
    admitted: tuple[str, ...]      # kiosk ids the edge admits, sorted
    unadmitted: tuple[str, ...]    # active kiosks with no source: the edge refuses them


@dataclass(frozen=True)
class EdgeSettings:
    listen: str                          # kiosk-facing "IP:PORT"
    address_list: str                    # paths Kamailio reads the tables from
    dispatcher_list: str
    topoh_key: str
    internal: str | None = None          # "IP:PORT" towards the workers, when apart
    advertised_ip: str | None = None     # default: the listen IP
    pin_header: str = "X-ICS-PIN"
    source_header: str = "X-ICS-Kiosk-Source"
    msg_max_bytes: int = 4096
    pike_unit_seconds: int = 2
    pike_requests_per_unit: int = 30
    ping_seconds: int = 10
    retry_after_seconds: int = 5
    rtpengine: str | None = None         # "udp:IP:PORT" of rtpengine's ng socket; None: no anchoring


def _network(kiosk: KioskRow) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(kiosk.source, strict=False)
    except ValueError:
        raise EdgeError(f"kiosk {kiosk.id!r}: source {kiosk.source!r} is not an address or "
                        f"network") from None


def address_table(kiosks: Iterable[KioskRow]) -> AddressTable:
    """The permissions address file for the active kiosks with a source."""
    by_network: dict = {}
    admitted, unadmitted = [], []
    for k in kiosks:
        if not KIOSK_ID.fullmatch(k.id or ""):
            raise EdgeError(f"kiosk {k.id!r}: an id the edge can match must be 1-64 letters, "
                            f"digits, - or _")
        if not k.active:
            continue
        if k.source is None:
            unadmitted.append(k.id)
            continue
        by_network.setdefault(_network(k), []).append(k)
        admitted.append(k.id)
    networks = sorted(by_network, key=lambda n: (n.version, n.network_address, n.prefixlen))
    for i, a in enumerate(networks):
        for b in networks[i + 1:]:
            if a.version == b.version and a.overlaps(b):
                raise EdgeError(
                    f"kiosk sources overlap: {a} ({', '.join(k.id for k in by_network[a])}) and "
                    f"{b} ({', '.join(k.id for k in by_network[b])}); give kiosks at one place "
                    f"the same network, or disjoint ones")
    lines = ["# ICS kiosk sources: group address prefixlen port kiosks (`+`: trusted)\n"]
    for n in networks:
        tag = ",".join(f"{k.id}+" if k.trusted else k.id
                       for k in sorted(by_network[n], key=lambda k: k.id))
        lines.append(f"{PERMISSIONS_GROUP} {n.network_address} {n.prefixlen} 0 {tag}\n")
    return AddressTable("".join(lines), tuple(sorted(set(admitted))), tuple(sorted(unadmitted)))


def workers_of_nodes(hosts: Sequence[str], workers: int, port_base: int,
                     calls_max: int) -> list[WorkerAddress]:
    """Every node's workers, each node laid out as [switch] says (worker i on port_base + i)."""
    if workers < 1:
        raise EdgeError(f"workers per node must be >= 1, got {workers}")
    if not 1 <= port_base <= 65535 - (workers - 1):
        raise EdgeError(f"worker ports {port_base}..{port_base + workers - 1} are not UDP ports")
    if calls_max < 1:
        raise EdgeError(f"calls per worker must be >= 1, got {calls_max}")
    out, seen = [], set()
    for host in hosts:
        _ip(host, "node address")
        if host in seen:
            raise EdgeError(f"node address {host} given twice")
        seen.add(host)
        for i in range(workers):
            out.append(WorkerAddress(host, port_base + i, calls_max, f"{host}-w{i + 1}"))
    return out


def dispatcher_table(workers: Sequence[WorkerAddress]) -> str:
    if not workers:
        raise EdgeError("no workers: the edge would refuse every call")
    lines = ["# ICS media workers: setid destination flags priority attributes\n"]
    for w in workers:
        host = f"[{w.host}]" if ":" in w.host else w.host
        lines.append(f"{DISPATCHER_SET} sip:{host}:{w.port} 0 0 "
                     f"duid={w.duid};maxload={w.calls_max}\n")
    return "".join(lines)


def _ip(value: str, what: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise EdgeError(f"{what} {value!r} is not an IP address") from None


def _socket(value: str, what: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise EdgeError(f"{what} {value!r} is not IP:PORT")
    host = _ip(host.strip("[]"), what)
    return f"udp:{host}:{int(port)}" if ":" not in host else f"udp:[{host}]:{int(port)}"


def _path(value: str, what: str) -> str:
    if not value.startswith("/") or any(c in value for c in '"\n\r\\'):
        raise EdgeError(f"{what} {value!r} must be an absolute path without quotes or newlines")
    return value


def _bounded(value: int, low: int, high: int, what: str) -> int:
    if not isinstance(value, int) or not low <= value <= high:
        raise EdgeError(f"{what} must be an integer in {low}..{high}, got {value!r}")
    return value


def _defines(s: EdgeSettings) -> list[tuple[str, str | None]]:
    listen = _socket(s.listen, "listen")
    advertised = _ip(s.advertised_ip, "advertised address") if s.advertised_ip else \
        listen.split(":", 1)[1].rsplit(":", 1)[0].strip("[]")
    for name, what in ((s.pin_header, "PIN header"), (s.source_header, "source header")):
        if not HEADER_NAME.fullmatch(name):
            raise EdgeError(f"{what} {name!r} is not a header name")
    if s.pin_header.lower() == s.source_header.lower():
        raise EdgeError("the PIN header and the source header must differ")
    if not TOPOH_KEY.fullmatch(s.topoh_key):
        raise EdgeError("topology-hiding key must be 16-128 letters or digits")
    out: list[tuple[str, str | None]] = [
        ("ICS_LISTEN", listen),
        ("ICS_ADVERTISED_IP", f'"{advertised}"'),
        ("ICS_TOPOH_KEY", f'"{s.topoh_key}"'),
        ("ICS_ADDRESS_LIST", f'"{_path(s.address_list, "address list")}"'),
        ("ICS_DISPATCHER_LIST", f'"{_path(s.dispatcher_list, "dispatcher list")}"'),
        ("ICS_PIN_HEADER", f'"{s.pin_header}"'),
        ("ICS_SOURCE_HEADER", f'"{s.source_header}"'),
        ("ICS_MSG_MAX", str(_bounded(s.msg_max_bytes, MSG_MAX_BYTES_MIN, MSG_MAX_BYTES_MAX,
                                     "largest message (bytes)"))),
        ("ICS_PIKE_UNIT", str(_bounded(s.pike_unit_seconds, 1, 60, "flood window (s)"))),
        ("ICS_PIKE_DENSITY", str(_bounded(s.pike_requests_per_unit, 2, 10_000,
                                          "requests per flood window"))),
        ("ICS_PING_SECONDS", str(_bounded(s.ping_seconds, 0, 3600, "worker probe interval (s)"))),
        ("ICS_RETRY_AFTER", str(_bounded(s.retry_after_seconds, 1, 3600, "Retry-After (s)"))),
    ]
    if s.internal:
        out.append(("ICS_LISTEN_INTERNAL", _socket(s.internal, "internal listen")))
    if s.rtpengine:
        if not s.rtpengine.startswith("udp:"):
            raise EdgeError(f"rtpengine socket {s.rtpengine!r} must be udp:IP:PORT")
        out.append(("ICS_RTPENGINE_SOCKET", f'"{_socket(s.rtpengine[4:], "rtpengine socket")}"'))
        out.append(("ICS_WITH_RTPENGINE", None))
    return out


def render_config(template: str, settings: EdgeSettings) -> str:
    """The template with the site's values defined ahead of its own defaults."""
    first, sep, rest = template.partition("\n")
    if first.strip() != "#!KAMAILIO" or not sep:
        raise EdgeError("the Kamailio template must start with a #!KAMAILIO line")
    block = ["#", "# Rendered by `ics edge render`: the site's values.", "#"]
    block += [f"#!define {name}" + (f" {value}" if value is not None else "")
              for name, value in _defines(settings)]
    return first + "\n" + "\n".join(block) + "\n" + rest
