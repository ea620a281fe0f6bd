"""A worker process's tie to the node that started it: it never outlives its parent.

Two mechanisms, because either alone has a gap: the kernel's parent-death signal
(prctl PR_SET_PDEATHSIG, Linux) sends SIGTERM the moment the parent dies, even under SIGKILL;
and a watch on getppid() catches what that misses (the parent died before prctl ran, or a platform
without prctl). The supervisor passes its pid in `PARENT_PID_ENV`.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
from collections.abc import Callable, Mapping

__all__ = ["PARENT_PID_ENV", "PR_SET_PDEATHSIG", "WATCH_SECONDS", "EXIT_BOUND_SECONDS",
           "expected_parent", "die_with_parent", "parent_gone", "watch_parent"]

PARENT_PID_ENV = "ICS_PARENT_PID"
PR_SET_PDEATHSIG = 1           # <linux/prctl.h>
WATCH_SECONDS = 1.0            # how often the worker looks for its parent
EXIT_BOUND_SECONDS = 5.0       # an orphan that has not stopped cleanly by then exits hard


def expected_parent(environ: Mapping[str, str] = os.environ) -> int | None:
    text = environ.get(PARENT_PID_ENV, "")
    return int(text) if text.isdigit() and int(text) > 1 else None


def parent_gone(expected: int | None) -> bool:
    """The parent that started us is no longer our parent (we were re-parented to init or a
    subreaper). Without an expected pid there is nothing to compare: never gone."""
    return expected is not None and os.getppid() != expected


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel for `sig` when our parent dies. False where prctl is not available."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return False
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                      ctypes.c_ulong]
    return prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def watch_parent(reactor, on_gone: Callable[[], object], *,
                 expected: int | None = None, interval: float = WATCH_SECONDS,
                 exit_bound: float = EXIT_BOUND_SECONDS,
                 hard_exit: Callable[[int], object] = os._exit):
    """Call `on_gone` (a clean stop) once the parent is gone, and exit hard if the process is
    still running `exit_bound` seconds later. Returns the LoopingCall (stop it to stop watching)."""
    from twisted.internet import task

    expected = expected_parent() if expected is None else expected

    def check():
        if parent_gone(expected):
            loop.stop()
            reactor.callLater(exit_bound, hard_exit, 1)
            on_gone()
    loop = task.LoopingCall(check)
    loop.clock = reactor
    loop.start(interval, now=True)
    return loop
