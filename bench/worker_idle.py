"""Idle cost of a media worker: CPU share of a worker with no call, polled as configured
(worker.poll_idle_ms, 50 ms) against the reference of polling every 10 ms, same machine, same run.

    .venv/bin/python bench/worker_idle.py [--seconds 5] [--rounds 3]

Prints the median CPU % of one core for each, and the ratio. The worker's core link points at a
closed port (it retries every 2 s), which both variants share.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def measure(poll_idle_ms: int, seconds: float, tmp: Path) -> float:
    cfg = tmp / f"idle{poll_idle_ms}.toml"
    cfg.write_text(f"[worker]\npoll_idle_ms = {poll_idle_ms}\n")
    port = _free_port()
    argv = [sys.executable, "-m", "switch.worker", "--worker-id", "bench", "--sip-port",
            str(_free_port()), "--rtp-port-min", "41000", "--rtp-port-max", "41039",
            "--core", f"tcp:127.0.0.1:{port}", "--config", str(cfg), "--data-dir", str(tmp)]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2.0)                      # imports and pjsua start-up are not idle time
        c0, t0 = _cpu_seconds(proc.pid), time.monotonic()
        time.sleep(seconds)
        c1, t1 = _cpu_seconds(proc.pid), time.monotonic()
        return 100.0 * (c1 - c0) / (t1 - t0)
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ours, ref = [], []
        for _ in range(a.rounds):
            ours.append(measure(50, a.seconds, tmp))
            ref.append(measure(10, a.seconds, tmp))
    m_ours, m_ref = statistics.median(ours), statistics.median(ref)
    print(f"idle worker, poll 50 ms (configured): {m_ours:.2f}% of a core (median of {a.rounds})")
    print(f"reference, poll 10 ms:               {m_ref:.2f}% of a core (median of {a.rounds})")
    print(f"ratio configured/reference:          {m_ours / m_ref:.2f}" if m_ref else "ratio: n/a")


if __name__ == "__main__":
    main()
