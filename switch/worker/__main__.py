"""Run one media worker: ``python -m switch.worker --worker-id ID --sip-port P --rtp-port-min A
--rtp-port-max B --core tcp:HOST:PORT [--settings JSON] [--data-dir DIR]``.

The supervisor starts one per slot group (switch.processes.supervisor.worker_argv); SIGTERM ends the calls,
reports them to the core and exits. Logs go to stdout, one JSON object per line (plain text
on a terminal).
"""
from __future__ import annotations

import argparse
import signal
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m switch.worker", description=__doc__.split("\n")[0])
    p.add_argument("--worker-id", required=True)
    p.add_argument("--sip-port", type=int, required=True)
    p.add_argument("--rtp-port-min", type=int, required=True)
    p.add_argument("--rtp-port-max", type=int, required=True)
    p.add_argument("--core", required=True, help="the core's AMP address, e.g. tcp:127.0.0.1:7070")
    p.add_argument("--settings", default=None,
                   help="the worker's settings as JSON (switch.settings.WorkerProcessSettings), "
                        "as the supervisor passes them; the defaults when left out")
    p.add_argument("--data-dir", default=None, help="recordings and generated prompts go here")
    args = p.parse_args(argv)
    if not 0 < args.sip_port < 65536:
        p.error(f"--sip-port must be a UDP port, got {args.sip_port}")
    if not 0 < args.rtp_port_min < args.rtp_port_max < 65536:
        p.error(f"--rtp-port-min/--rtp-port-max must be an increasing port range, got "
                f"{args.rtp_port_min}-{args.rtp_port_max}")
    if not args.core.startswith(("tcp:", "unix:")):
        p.error(f"--core must be tcp:HOST:PORT or unix:PATH, got {args.core!r}")
    return args


def _why(e: BaseException) -> str:
    """A start-up error's reason; pjsua2.Error has an empty str() but says why in info()."""
    info = getattr(e, "info", None)
    text = (info() if callable(info) else "") or str(e)
    return f"{type(e).__name__}: {text}" if text else repr(e)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from switch.processes import lifeline
    lifeline.die_with_parent()          # the node's death (even SIGKILL) ends this worker
    if lifeline.parent_gone(lifeline.expected_parent()):
        print("switch.worker: the node that started this worker is gone", file=sys.stderr)
        return 1
    from switch.settings import SettingsError, WorkerProcessSettings
    try:
        cfg = (WorkerProcessSettings.from_json(args.settings) if args.settings
               else WorkerProcessSettings())
    except SettingsError as e:
        print(f"switch.worker: {e}", file=sys.stderr)
        return 2

    import asyncio
    from twisted.internet import asyncioreactor
    asyncioreactor.install(asyncio.new_event_loop())
    from twisted.internet import reactor
    from switch.processes import logs
    # JSON lines to the supervisor, which relays them structured into the node's own log
    # format; plain text when a person runs a worker on a terminal.
    logs.configure("console" if sys.stdout.isatty() else "json", cfg.log_level,
                   stream=sys.stdout, worker=args.worker_id)

    from pathlib import Path

    from switch.worker.service import Worker, WorkerOptions
    options = WorkerOptions(
        worker_id=args.worker_id, sip_port=args.sip_port, rtp_port_min=args.rtp_port_min,
        rtp_port_max=args.rtp_port_max, core=args.core,
        data_dir=Path(args.data_dir) if args.data_dir else cfg.data_dir, settings=cfg)
    worker = Worker(reactor, options)
    status = {"code": 0}

    def stop(*_):
        if getattr(stop, "called", False):
            return
        stop.called = True
        d = worker.stop()
        d.addErrback(lambda f: (f.printTraceback(), status.update(code=1)))
        d.addBoth(lambda _: reactor.stop())

    def start():
        try:
            worker.start()
        except Exception as e:           # e.g. the SIP port is taken
            print(f"switch.worker: cannot start: {_why(e)}", file=sys.stderr)
            status["code"] = 1
            reactor.stop()
            return
        lifeline.watch_parent(reactor, stop)

    signal.signal(signal.SIGTERM, lambda *a: reactor.callFromThread(stop))
    signal.signal(signal.SIGINT, lambda *a: reactor.callFromThread(stop))
    reactor.callWhenRunning(start)
    reactor.run(installSignalHandlers=False)
    return status["code"]


if __name__ == "__main__":
    sys.exit(main())
