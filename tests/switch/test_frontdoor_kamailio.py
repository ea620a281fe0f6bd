"""The Kamailio edge template (config/kamailio/) as a dispatcher: it passes Kamailio's own check,
and a running Kamailio built from it dispatches a listed kiosk's call to a (stand-in) worker, keeps
the dialog on its path and answers 503 when no worker answers. tests/security/ attacks it in front
of a real node. Needs Debian's `kamailio` (tests/run installs it); skipped only when it is absent."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "config" / "kamailio" / "kamailio.cfg"
EXAMPLE_LIST = ROOT / "config" / "kamailio" / "dispatcher.list"
SCENARIOS = Path(__file__).with_name("sipp")

pytestmark = pytest.mark.skipif(
    shutil.which("kamailio") is None or shutil.which("sipp") is None,
    reason="kamailio or sipp missing: apt-get install kamailio sip-tester (tests/run does)")


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _defines(listen_port: int, dispatcher_list: Path) -> list[str]:
    kiosks = dispatcher_list.with_name("kiosks.list")
    kiosks.write_text("1 127.0.0.1 32 0 kiosk1\n")        # the SIPp kiosk's source and From user
    return ["-A", f"ICS_LISTEN=udp:127.0.0.1:{listen_port}", "-A", "ICS_PING_SECONDS=0",
            "-A", f'ICS_DISPATCHER_LIST="{dispatcher_list}"', "-A", f'ICS_ADDRESS_LIST="{kiosks}"']


def _check(cfg: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["kamailio", "-c", "-f", str(cfg), *args], capture_output=True,
                          text=True, timeout=30)


def test_the_dispatcher_template_passes_kamailios_config_check():
    result = _check(TEMPLATE, "-A", f'ICS_DISPATCHER_LIST="{EXAMPLE_LIST}"')
    assert result.returncode == 0, result.stderr[-3000:]
    assert "config file ok" in (result.stdout + result.stderr).lower()


def test_the_config_check_does_refuse_a_broken_template(tmp_path):
    broken = tmp_path / "broken.cfg"
    broken.write_text(TEMPLATE.read_text().replace("ds_select_dst(", "ds_select_destination("))
    result = _check(broken)
    assert result.returncode != 0 and "ds_select_destination" in result.stderr


@pytest.fixture
async def kamailio(tmp_path):
    """Starts Kamailio from the template on a loopback port; yields (port, write_list)."""
    port = _free_udp_port()
    listing = tmp_path / "dispatcher.list"
    procs = []

    async def start(workers: list[tuple[int, int]]):
        listing.write_text("".join(f"1 sip:127.0.0.1:{p} 0 0 duid=w{i};maxload={load}\n"
                                   for i, (p, load) in enumerate(workers)))
        with open(tmp_path / "kamailio.log", "wb") as log:
            proc = await asyncio.create_subprocess_exec(
                "kamailio", "-DD", "-E", "-Y", str(tmp_path), "-f", str(TEMPLATE),
                *_defines(port, listing), stdout=asyncio.subprocess.DEVNULL, stderr=log,
                start_new_session=True)
        procs.append(proc)
        await _wait_answering(port, tmp_path / "kamailio.log")
        return port

    yield start
    for proc in procs:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGTERM)    # its own session: Kamailio and its children
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except asyncio.TimeoutError:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()


async def _wait_answering(port: int, log: Path, timeout: float = 15.0) -> None:
    options = (f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
               "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-probe;rport\r\n"
               "From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1>\r\n"
               "Call-ID: probe\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
               "Content-Length: 0\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        while loop.time() < deadline:
            s.sendto(options, ("127.0.0.1", port))
            try:
                reply = await asyncio.wait_for(loop.sock_recv(s, 4096), 0.3)
            except (asyncio.TimeoutError, ConnectionRefusedError):
                continue
            if reply.startswith(b"SIP/2.0 200"):
                return
    raise AssertionError("Kamailio never answered OPTIONS:\n" + log.read_text()[-3000:])


async def _sipp(scenario: str, tmp_path: Path, *args: str, timeout: float = 15.0):
    errors = tmp_path / f"{scenario}.{len(list(tmp_path.iterdir()))}.errors.log"
    proc = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(SCENARIOS / f"{scenario}.xml"), "-nostdin", "-i", "127.0.0.1",
        "-m", "1", "-timeout", f"{int(timeout)}s", "-timeout_error", "-trace_err",
        "-error_file", str(errors), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout + 10)
    log = out.decode(errors="replace")[-2500:]
    if errors.exists():
        log += "\n--- errors\n" + errors.read_text(errors="replace")[-3000:]
    return proc.returncode, log


async def test_kamailio_dispatches_a_call_to_a_worker_and_keeps_the_dialog_on_its_path(
        kamailio, tmp_path):
    worker_port = _free_udp_port()
    port = await kamailio([(worker_port, 2)])
    worker = asyncio.ensure_future(
        _sipp("kamailio_worker", tmp_path, "-p", str(worker_port)))
    await asyncio.sleep(0.3)                       # the worker is listening
    code, log = await _sipp("kamailio_call", tmp_path, "-p", str(_free_udp_port()),
                            "-s", "15551234567", f"127.0.0.1:{port}")
    assert code == 0, log
    wcode, wlog = await worker
    assert wcode == 0, wlog


async def test_kamailio_answers_options_with_what_it_allows(kamailio, tmp_path):
    port = await kamailio([(_free_udp_port(), 2)])
    code, log = await _sipp("frontdoor_options", tmp_path, "-p", str(_free_udp_port()),
                            f"127.0.0.1:{port}")
    assert code == 0, log


async def test_kamailio_answers_503_with_retry_after_when_no_worker_answers(kamailio, tmp_path):
    port = await kamailio([(_free_udp_port(), 2)])   # nothing listens there: the branch times out
    code, log = await _sipp("kamailio_full", tmp_path, "-p", str(_free_udp_port()),
                            "-s", "15551234567", f"127.0.0.1:{port}")
    assert code == 0, log
