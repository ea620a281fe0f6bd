"""`ics demo` as a person runs it: a subprocess on a fresh data directory with the embedded
database, over real SIP (twice in a row, the second time with 2-second billing periods, with the
old fixed port of its called party, UDP 5090, taken) and scripted without SIP."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def run_ics(*args, data_dir: Path, config: Path | None = None, timeout: float = 240):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICS_")}
    env["ICS_DATA_DIR"] = str(data_dir)
    if config is not None:
        env["ICS_CONFIG"] = str(config)
    return subprocess.run([sys.executable, "-m", "ops.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def timeline(out: str) -> list[tuple[float, str]]:
    """The (offset, text) lines of the demo's call timeline."""
    return [(float(m.group(1)), m.group(2))
            for m in re.finditer(r"^  \+\s*([0-9.]+)s  (.*)$", out, re.M)]


def first(events, text: str) -> float:
    found = [t for t, line in events if text in line]
    assert found, f"no {text!r} in the timeline:\n" + "\n".join(line for _, line in events)
    return found[0]


OLD_CALLED_PARTY_PORT = 5090     # the demo route's port in config/demo/directory.toml


def occupy_udp(port: int) -> socket.socket | None:
    """Hold `port` on 127.0.0.1 (None when something else already holds it: taken either way)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        return None
    return s


@pytest.fixture
def data_dir(tmp_path):
    yield tmp_path / "var"
    run_ics("db", "stop", data_dir=tmp_path / "var", timeout=60)


@pytest.mark.timeout(300)
def test_demo_places_a_call_over_sip_through_the_node_twice_on_the_same_data(data_dir, tmp_path):
    short_periods = tmp_path / "short-periods.toml"
    short_periods.write_text("[core]\nperiod_seconds = 2\n[worker]\ncontinue_lead_seconds = 0.5\n")
    balances = []
    for config, talk in ((None, 3), (short_periods, 5)):
        held = occupy_udp(OLD_CALLED_PARTY_PORT) if config is not None else None
        try:
            r = run_ics("demo", "--talk-seconds", str(talk), data_dir=data_dir, config=config)
        finally:
            if held is not None:
                held.close()
        out = r.stdout
        assert r.returncode == 0, out + r.stderr
        events = timeline(out)
        # every step of the call, in the order it happens on the wire (a prompt the worker
        # starts and the 200 OK the simulator sees race by a few ms: they are not ordered)
        steps = [first(events, t) for t in (
            "sends INVITE to the SIP front door", "front door answers 302",
            "kiosk sends INVITE to media worker w1", "worker answers the kiosk",
            "core: PIN ok, inmate 10001", "core: authorized call",
            "trunk INVITE reaches the called party (+19515550101", "called party answers",
            "called party presses 1", "core: accepted", "called party hangs up",
            "core: End (completed")]
        assert steps == sorted(steps), events
        assert steps[2] <= first(events, "kiosk hears (") <= steps[4]
        assert steps[6] <= first(events, "called party hears (") <= steps[8]
        talked = first(events, "called party hangs up") - first(events, "core: accepted")
        assert talk - 0.5 <= talked <= talk + 5, events
        assert "To accept, press one" in out                 # the transcript of the announcement
        heard = re.search(r"measured in that recording: ([0-9.]+)s of prompt audio before "
                          r"pressing 1, then ([0-9.]+)s of the inmate's voice", out)
        assert heard and float(heard.group(1)) > 5 and float(heard.group(2)) >= talk - 1.5, out
        assert re.search(r"disposition\s+completed", out) and re.search(r"worker_id\s+w1", out)
        assert "ledger verify: ok" in out
        balances.append(re.search(r"balance of prepaid:\+19515550101: available ([0-9.]+)",
                                  out).group(1))
    assert "core: Continue after period 1" in out           # 2-second periods in the second run
    assert float(balances[1]) < float(balances[0]) < 20.0
    leftovers = subprocess.run(["pgrep", "-f", f"switch.worker.*--data-dir {data_dir}"],
                               capture_output=True, text=True).stdout
    assert not leftovers.strip(), f"worker processes left running: {leftovers}"


@pytest.mark.timeout(240)
def test_demo_without_sip_bills_sixty_five_seconds_as_a_minute_then_six_second_steps(data_dir,
                                                                                     tmp_path):
    config = tmp_path / "json-logs.toml"
    config.write_text('[node]\nlog_format = "json"\n')
    r = run_ics("demo", "--no-sip", data_dir=data_dir, config=config)
    assert r.returncode == 0, r.stdout + r.stderr
    # The node's log is the node's format (switch.processes.logs), as `ics serve` writes it: JSON lines here.
    lines = (data_dir / "demo" / "node.log").read_text().splitlines()
    assert lines and all(isinstance(json.loads(line), dict) for line in lines)
    assert any(json.loads(line).get("call_id") for line in lines)
    out = r.stdout
    assert "called party presses 1" in out and re.search(r"disposition\s+completed", out)
    assert re.search(r"billed_seconds\s+66\b", out)       # 65 s: 60 s, then 6 s increments
    assert "period 1 ends at 60s" in out
    assert "ledger verify: ok" in out


def test_demo_refuses_a_talk_time_below_one_second(data_dir):
    r = run_ics("demo", "--talk-seconds", "0", data_dir=data_dir, timeout=60)
    assert r.returncode == 2 and "--talk-seconds: must be at least 1, got 0" in r.stderr
