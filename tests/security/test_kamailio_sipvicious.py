"""SIPVicious (svmap, svwar, svcrack; PyPI `sipvicious`) against both SIP entry points of the
same node: the Kamailio edge and the node's own front door. Neither gives away which extensions
exist and the edge names no software behind it. (The tools give up after the edge's first
refusal, so they never reach a flood's rate: test_kamailio_attacks.py floods by hand.) Every
target is a loopback address started by the test; the tools send from an attacker's address."""
from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import sys
from pathlib import Path

import pytest

from tests.security.conftest import ATTACKER, EDGE, NODE, needs_edge

pytestmark = [needs_edge, pytest.mark.timeout(240),
              pytest.mark.skipif(importlib.util.find_spec("sipvicious") is None,
                                 reason="sipvicious missing: pip install -e '.[test]'")]
SV_FROM = Path(__file__).with_name("sv_from.py")


async def svtool(tool: str, source: str, home: Path, *args: str, timeout: float = 90.0) -> str:
    """SIPVicious `tool` (svmap, svwar, svcrack) sending from `source`; its report."""
    home.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home)}              # its session files stay in the test
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SV_FROM), source, tool, *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL, env=env)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    return out.decode(errors="replace")


def _found_extensions(report: str) -> list[str]:
    return re.findall(r"^\|\s*(\d+)\s*\|", report, re.M)


@pytest.mark.parametrize("method", ["REGISTER", "INVITE", "OPTIONS"])
async def test_svwar_enumerates_no_extension_at_the_edge_or_the_front_door(edge, tmp_path, method):
    door = edge.rig.cfg.switch.frontdoor_port
    for host, port in ((EDGE, edge.port), (NODE, door)):
        report = await svtool("svwar", ATTACKER, tmp_path / "home", "-p",
                              str(port), "-m", method, "-e", "100-140,10001-10003", "--force",
                              "-t", "0.2", host)
        assert not _found_extensions(report), f"{host}:{port} {method}\n{report}"
        assert "found nothing" in report, report          # it was answered, and learnt nothing
    assert edge.worker_pid() is not None


async def test_svmap_learns_no_software_name_from_the_edge(edge, tmp_path):
    report = await svtool("svmap", ATTACKER, tmp_path / "home", "-p",
                          str(edge.port), EDGE)
    assert f"{EDGE}:{edge.port}" in report, report        # found, as a SIP device...
    assert re.search(r"kamailio|pjsip|pjsua|ics-", report, re.I) is None, report   # ...unnamed


async def test_svcrack_finds_no_password_for_a_kiosk_at_the_edge(edge, tmp_path):
    report = await svtool("svcrack", ATTACKER, tmp_path / "home", "-p",
                          str(edge.port), "-u", "kiosk-a1", "-r", "1000-1100", EDGE)
    assert not re.search(r"^\|\s*kiosk-a1\s*\|", report, re.M), report
