"""`ics edge render` and ops/edge.py: the kiosk source table, the worker table and the rendered
Kamailio config. The tables are checked as text (pure); the rendered config is checked by
Kamailio itself (`kamailio -c`), from a real database's kiosk table through the CLI."""
from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from ops.edge import (EdgeError, EdgeSettings, KioskRow, address_table, dispatcher_table,
                      render_config, workers_of_nodes)

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = (ROOT / "config" / "kamailio" / "kamailio.cfg").read_text()
needs_kamailio = pytest.mark.skipif(shutil.which("kamailio") is None,
                                    reason="kamailio missing (tests/run installs it)")


def _settings(**kw) -> EdgeSettings:
    base = dict(listen="127.0.0.1:5060", address_list="/etc/ics/kiosks.list",
                dispatcher_list="/etc/ics/dispatcher.list", topoh_key="a" * 32)
    return EdgeSettings(**{**base, **kw})


def _entries(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line and not line.startswith("#")]


def test_kiosks_sharing_a_network_share_one_line_and_trusted_ones_carry_a_plus():
    table = address_table([KioskRow("k-2", "10.1.0.0/24"), KioskRow("k-1", "10.1.0.7/24", True),
                           KioskRow("k-3", "10.2.0.9")])
    assert _entries(table.text) == [["1", "10.1.0.0", "24", "0", "k-1+,k-2"],
                                    ["1", "10.2.0.9", "32", "0", "k-3"]]
    assert table.admitted == ("k-1", "k-2", "k-3") and table.unadmitted == ()


def test_inactive_kiosks_are_left_out_and_kiosks_without_a_source_are_named_not_admitted():
    table = address_table([KioskRow("gone", "10.0.0.1", active=False), KioskRow("loose", None),
                           KioskRow("ok", "10.0.0.2")])
    assert [e[-1] for e in _entries(table.text)] == ["ok"]
    assert table.unadmitted == ("loose",)


def test_an_ipv6_kiosk_network_is_written_with_its_prefix_length():
    (entry,) = _entries(address_table([KioskRow("v6", "2001:db8::5/64")]).text)
    assert entry == ["1", "2001:db8::", "64", "0", "v6"]


@pytest.mark.parametrize("rows,message", [
    ([KioskRow("a", "10.0.0.0/24"), KioskRow("b", "10.0.0.5")], "overlap: 10.0.0.0/24 (a)"),
    ([KioskRow("a", "nonsense")], "kiosk 'a': source 'nonsense'"),
    ([KioskRow("a b", "10.0.0.1")], "kiosk 'a b'"),
    ([KioskRow("a,b", "10.0.0.1")], "kiosk 'a,b'"),
    ([KioskRow("x" * 65, "10.0.0.1")], "1-64 letters"),
])
def test_a_kiosk_table_the_edge_cannot_match_exactly_is_refused_naming_the_kiosk(rows, message):
    with pytest.raises(EdgeError, match=None) as e:
        address_table(rows)
    assert message in str(e.value)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True),
                          st.integers(0, 2**32 - 1), st.integers(16, 32), st.booleans()),
                min_size=1, max_size=12, unique_by=lambda t: t[0]))
def test_every_source_address_is_admitted_for_exactly_the_kiosks_registered_there(kiosks):
    rows = [KioskRow(k, f"{ipaddress.IPv4Address(a)}/{p}", t) for k, a, p, t in kiosks]
    try:
        table = address_table(rows)
    except EdgeError as e:
        assert "overlap" in str(e)
        nets = [ipaddress.ip_network(r.source, strict=False) for r in rows]
        assert any(a != b and a.overlaps(b) for a in nets for b in nets)
        return
    entries = _entries(table.text)
    for row in rows:
        source = ipaddress.ip_network(row.source, strict=False)
        matching = [e for e in entries
                    if source.subnet_of(ipaddress.ip_network(f"{e[1]}/{e[2]}"))]
        assert len(matching) == 1                       # one network line admits this source
        listed = matching[0][4].split(",")
        assert (row.id + "+" if row.trusted else row.id) in listed
        assert (row.id if row.trusted else row.id + "+") not in listed


def test_workers_of_every_node_are_listed_with_their_capacity():
    text = dispatcher_table(workers_of_nodes(["10.0.0.11", "10.0.0.12"], 2, 5070, 2))
    assert _entries(text) == [
        ["1", "sip:10.0.0.11:5070", "0", "0", "duid=10.0.0.11-w1;maxload=2"],
        ["1", "sip:10.0.0.11:5071", "0", "0", "duid=10.0.0.11-w2;maxload=2"],
        ["1", "sip:10.0.0.12:5070", "0", "0", "duid=10.0.0.12-w1;maxload=2"],
        ["1", "sip:10.0.0.12:5071", "0", "0", "duid=10.0.0.12-w2;maxload=2"]]


@pytest.mark.parametrize("args,message", [
    ((["node1.example"], 2, 5070, 2), "node address 'node1.example'"),
    ((["10.0.0.1", "10.0.0.1"], 2, 5070, 2), "given twice"),
    ((["10.0.0.1"], 0, 5070, 2), "workers per node"),
    ((["10.0.0.1"], 2, 65535, 2), "not UDP ports"),
    ((["10.0.0.1"], 2, 5070, 0), "calls per worker"),
])
def test_bad_worker_layouts_are_refused(args, message):
    with pytest.raises(EdgeError) as e:
        workers_of_nodes(*args)
    assert message in str(e.value)


def test_the_site_values_are_defined_ahead_of_the_templates_defaults():
    text = render_config(TEMPLATE, _settings(internal="10.9.0.1:5070", rtpengine="udp:127.0.0.1:2223",
                                             pin_header="X-Site-PIN"))
    head = text.split("#!ifndef ICS_LISTEN", 1)[0]
    assert text.startswith("#!KAMAILIO\n")
    for line in ("#!define ICS_LISTEN udp:127.0.0.1:5060", '#!define ICS_ADVERTISED_IP "127.0.0.1"',
                 "#!define ICS_LISTEN_INTERNAL udp:10.9.0.1:5070", "#!define ICS_WITH_RTPENGINE",
                 '#!define ICS_PIN_HEADER "X-Site-PIN"',
                 '#!define ICS_RTPENGINE_SOCKET "udp:127.0.0.1:2223"'):
        assert line + "\n" in head


@pytest.mark.parametrize("kw,message", [
    (dict(listen="127.0.0.1"), "listen '127.0.0.1' is not IP:PORT"),
    (dict(listen="kiosks.local:5060"), "is not an IP address"),
    (dict(listen='127.0.0.1:5060\n#!define X'), "is not IP:PORT"),
    (dict(pin_header="X-PIN\r\nVia"), "PIN header"),
    (dict(source_header="x-ics-pin", pin_header="X-ICS-PIN"), "must differ"),
    (dict(topoh_key='short"'), "topology-hiding key"),
    (dict(address_list='/etc/"x'), "address list"),
    (dict(dispatcher_list="relative.list"), "absolute path"),
    (dict(msg_max_bytes=10), "largest message"),
    (dict(pike_requests_per_unit=1), "requests per flood window"),
    (dict(rtpengine="127.0.0.1:2223"), "udp:IP:PORT"),
])
def test_values_that_would_break_or_inject_into_the_config_are_refused(kw, message):
    with pytest.raises(EdgeError) as e:
        render_config(TEMPLATE, _settings(**kw))
    assert message in str(e.value)


def ics(dsn, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICS_")}
    env["ICS_DATABASE_URL"] = dsn
    return subprocess.run([sys.executable, "-m", "ops.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def _kamailio_check(cfg: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["kamailio", "-c", "-f", str(cfg)], capture_output=True, text=True,
                          timeout=30)


@needs_kamailio
@pytest.mark.parametrize("extra", [[], ["--internal", "127.0.0.4:5071",
                                        "--rtpengine", "udp:127.0.0.1:2223"]])
async def test_the_rendered_edge_passes_kamailios_own_check(pg_dsn, tmp_path, extra):
    steps = [("facility", "add", "fac1", "--name", "North Jail", "--state", "NY", "--time-zone",
              "America/New_York", "--adp", "500", "--kind", "jail", "--profile", "fcc-2024"),
             ("kiosk", "add", "k-1", "--facility", "fac1", "--source", "10.20.0.0/24",
              "--trusted"),
             ("kiosk", "add", "k-2", "--facility", "fac1", "--source", "10.20.0.0/24"),
             ("kiosk", "add", "k-3", "--facility", "fac1")]
    for step in steps:
        r = ics(pg_dsn, *step)
        assert r.returncode == 0, (step, r.stderr)
    out = tmp_path / "edge"
    r = ics(pg_dsn, "edge", "render", "--out", str(out), "--listen", "127.0.0.1:5060",
            "--node", "127.0.0.2", *extra)
    assert r.returncode == 0, r.stderr
    assert "2 kiosk(s) admitted" in r.stdout and "kiosk k-3 has no source" in r.stdout
    assert _entries((out / "kiosks.list").read_text()) == [["1", "10.20.0.0", "24", "0", "k-1+,k-2"]]
    assert "sip:127.0.0.2:5070" in (out / "dispatcher.list").read_text()
    check = _kamailio_check(out / "kamailio.cfg")
    assert check.returncode == 0, check.stderr[-3000:]
    key = (out / "topoh.key").read_text()
    assert oct((out / "topoh.key").stat().st_mode & 0o777) == "0o600"
    r = ics(pg_dsn, "edge", "render", "--out", str(out), "--listen", "127.0.0.1:5060")
    assert r.returncode == 0 and (out / "topoh.key").read_text() == key    # kept across renders


@needs_kamailio
def test_kamailios_check_does_refuse_a_broken_render(tmp_path):
    cfg = tmp_path / "kamailio.cfg"
    cfg.write_text(render_config(TEMPLATE, _settings()).replace("allow_source_address(",
                                                                "allow_source_addr("))
    r = _kamailio_check(cfg)
    assert r.returncode != 0 and "allow_source_addr" in r.stderr


async def test_overlapping_kiosk_sources_make_the_render_fail_naming_them(pg_dsn, tmp_path):
    for step in [("facility", "add", "fac1", "--name", "N", "--state", "NY", "--time-zone",
                  "America/New_York", "--adp", "500", "--kind", "jail", "--profile", "fcc-2024"),
                 ("kiosk", "add", "k-1", "--facility", "fac1", "--source", "10.20.0.0/16"),
                 ("kiosk", "add", "k-2", "--facility", "fac1", "--source", "10.20.3.4")]:
        assert ics(pg_dsn, *step).returncode == 0
    r = ics(pg_dsn, "edge", "render", "--out", str(tmp_path / "e"), "--listen", "127.0.0.1:5060")
    assert r.returncode == 2 and "10.20.0.0/16 (k-1)" in r.stderr and "k-2" in r.stderr
    assert not (tmp_path / "e" / "kamailio.cfg").exists()
