"""Workers left over from an earlier run of this node (it was SIGKILLed, or crashed): find them,
safely, and end them before new workers need their ports.

Only our own workers are ever signalled. A candidate must run as our user, not be us or our child,
and its command line must be this node's worker command for that very worker id and SIP port
(`--worker-id W --sip-port P`). Candidates come from the pid file the supervisor writes per SIP
port (with the process start time, so a recycled pid is never taken for the worker) and from a
scan of /proc for orphaned workers whose pid file was lost.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["PID_FILE_FORMAT", "pid_file", "write_pid_file", "remove_pid_file", "start_time",
           "is_our_worker", "find_stale", "clear_stale", "STALE_TERM_SECONDS"]

log = logging.getLogger("ics.stale")

PID_FILE_FORMAT = "worker-{port}.pid"
STALE_TERM_SECONDS = 3.0        # a stale worker that ignores SIGTERM this long gets SIGKILL


def pid_file(run_dir: Path, sip_port: int) -> Path:
    return Path(run_dir) / PID_FILE_FORMAT.format(port=sip_port)


def start_time(pid: int, proc: Path = Path("/proc")) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(")") + 2:].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def write_pid_file(run_dir: Path, sip_port: int, pid: int) -> None:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = pid_file(run_dir, sip_port)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{pid} {start_time(pid) or 0}\n")
    tmp.replace(path)


def remove_pid_file(run_dir: Path, sip_port: int, pid: int) -> None:
    path = pid_file(run_dir, sip_port)
    try:
        if path.read_text().split()[0] == str(pid):
            path.unlink()
    except (OSError, IndexError):
        pass


def _cmdline(pid: int, proc: Path) -> list[str] | None:
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a] or None


def _owner(pid: int, proc: Path) -> int | None:
    try:
        return (proc / str(pid)).stat().st_uid
    except OSError:
        return None


def _ppid(pid: int, proc: Path) -> int | None:
    try:
        stat = (proc / str(pid) / "stat").read_text()
        return int(stat[stat.rfind(")") + 2:].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _pairs(argv: Sequence[str]) -> set[tuple[str, str]]:
    return set(zip(argv, argv[1:]))


def is_our_worker(pid: int, worker_id: str, sip_port: int, command_tail: Sequence[str], *,
                  proc: Path = Path("/proc")) -> bool:
    """`pid` runs this node's worker command as `worker_id` on `sip_port`, as our user, and is
    neither us nor a child of ours."""
    if pid <= 1 or pid == os.getpid() or _ppid(pid, proc) == os.getpid():
        return False
    if _owner(pid, proc) != os.getuid():
        return False
    argv = _cmdline(pid, proc)
    if not argv:
        return False
    tail = list(command_tail)
    if tail and argv[1:1 + len(tail)] != tail:
        return False
    pairs = _pairs(argv)
    return ("--worker-id", worker_id) in pairs and ("--sip-port", str(sip_port)) in pairs


def find_stale(run_dir: Path | None, workers: Iterable[tuple[str, int]],
               command_tail: Sequence[str], *, proc: Path = Path("/proc")) -> dict[int, str]:
    """pid -> worker id of the leftover workers for these (worker id, SIP port) pairs."""
    workers = list(workers)
    found: dict[int, str] = {}
    for worker_id, port in workers:
        if run_dir is None:
            continue
        try:
            pid_text, started = pid_file(run_dir, port).read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            continue
        if start_time(pid, proc) == int(started) and is_our_worker(pid, worker_id, port,
                                                                   command_tail, proc=proc):
            found[pid] = worker_id
    try:
        pids = [int(p.name) for p in proc.iterdir() if p.name.isdigit()]
    except OSError:
        pids = []
    for pid in pids:
        if pid in found:
            continue
        for worker_id, port in workers:
            if is_our_worker(pid, worker_id, port, command_tail, proc=proc):
                found[pid] = worker_id
                break
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes (it holds no port); its parent will reap it.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


async def clear_stale(stale: dict[int, str], *, term_seconds: float = STALE_TERM_SECONDS,
                      poll_seconds: float = 0.05) -> list[int]:
    """SIGTERM each stale worker, SIGKILL those still alive after `term_seconds`; returns the
    pids signalled. Waits (bounded) until they are gone, so their ports are free."""
    for pid, worker_id in stale.items():
        log.warning("ending stale worker %s (pid %d) left by an earlier run", worker_id, pid)
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    loop = asyncio.get_running_loop()
    deadline = loop.time() + term_seconds
    while any(_alive(p) for p in stale) and loop.time() < deadline:
        await asyncio.sleep(poll_seconds)
    for pid in stale:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = loop.time() + term_seconds
    while any(_alive(p) for p in stale) and loop.time() < deadline:
        await asyncio.sleep(poll_seconds)
    return list(stale)
