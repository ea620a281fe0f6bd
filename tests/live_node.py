"""One way to run a live node for tests: `ics serve` in its own process, as an operator runs it.

`serve(config, root)` starts `python -m ops.cli --config <config> serve` with every ICS_*
variable of the test's environment removed, its log written beside `root` (text or JSON, as
the config says), waits for the start-up line that names its AMP and HTTP ports (the config
binds them to port 0, so the kernel picks free ones), and stops it with SIGTERM afterwards
(SIGKILL if it overruns). The fixtures of tests/web, tests/browser and tests/observe build on it;
each writes its own config (`node_config` writes the common part).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START_SECONDS_MAX = 60.0
STOP_SECONDS_MAX = 20.0
_SERVING = re.compile(r"serving; AMP :(\d+), HTTP :(\d+)")


@dataclass
class LiveNode:
    proc: subprocess.Popen
    root: Path
    log_path: Path
    http_port: int = 0
    amp_port: int = 0
    worker_sip_port: int = 0
    lines: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(p) for p in children.read_text().split()]

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5.0) as r:
            return r.read().decode()

    def sample(self, name: str, labels: str = "") -> float | None:
        """A sample's value from /metrics, e.g. sample('ics_workers', 'state="ready"')."""
        key = f"{name}{{{labels}}}" if labels else name
        for line in self.metrics().splitlines():
            if line.startswith(key + " "):
                return float(line.rsplit(" ", 1)[1])
        return None


def node_config(root: Path, dsn: str, extra: str = "") -> Path:
    """`root/ics.toml`: this database, data under `root`, HTTP and AMP on free ports, `extra`
    (more TOML: sections of its own, or keys after a section header it repeats)."""
    path = root / "ics.toml"
    path.write_text(f'[database]\nurl = "{dsn}"\n[node]\ndata_dir = "{root}"\n'
                    '[core]\nhttp_port = 0\n[switch]\ncore_amp_port = 0\n' + extra)
    return path


def _started(node: LiveNode, deadline: float) -> None:
    """Wait for the start-up line (polling the log: the node writes it once it listens)."""
    offset = 0
    while True:
        with open(node.log_path, "rb") as f:
            f.seek(offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1
        offset += end
        for line in chunk[:end].decode(errors="replace").splitlines():
            node.lines.append(line)
            m = _SERVING.search(line)
            if m:
                node.amp_port, node.http_port = int(m.group(1)), int(m.group(2))
                return
        if node.proc.poll() is not None:
            raise RuntimeError(f"ics serve exited ({node.proc.returncode}) before serving:\n"
                               + "\n".join(node.log_lines()[-40:]))
        if time.monotonic() > deadline:
            raise RuntimeError("ics serve did not start within "
                               f"{START_SECONDS_MAX}s:\n" + "\n".join(node.log_lines()[-40:]))
        time.sleep(0.05)


@contextmanager
def serve(config: Path, root: Path, *, workers: int | None = 0) -> Iterator[LiveNode]:
    """A running `ics serve` (with `--workers N` unless None: then the config's count)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICS_")}
    argv = [sys.executable, "-m", "ops.cli", "--config", str(config), "serve"]
    if workers is not None:
        argv += ["--workers", str(workers)]
    log_path = root.parent / f"{root.name}-node.log"      # beside its data dir, not in it
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, env=env, stderr=log, stdout=subprocess.DEVNULL, cwd=ROOT)
    node = LiveNode(proc, root, log_path)
    try:
        _started(node, time.monotonic() + START_SECONDS_MAX)
        yield node
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_SECONDS_MAX)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
