"""A stand-in media worker for the supervisor and front door tests: the worker's side of Hello and
Heartbeat over AMP, and a bound SIP port, without pjsua2.

Takes switch.worker's command line. Behaviour comes from the environment, applied to the workers
listed in STANDIN_ONLY (comma-separated ids; unset: every worker):
  STANDIN_CAPACITY=N           calls announced in Hello (default 2)
  STANDIN_HEARTBEAT_SECONDS=S  heartbeat interval (default 0.2)
  STANDIN_CALLS=a,b            call ids listed in every Heartbeat
  STANDIN_EXIT=CODE            exit at once with CODE, before saying anything (a crash loop)
  STANDIN_MUTE=1               say Hello, then never heartbeat (a hung worker)
  STANDIN_NO_HELLO=1           connect, say nothing
  STANDIN_IGNORE_TERM=1        ignore SIGTERM (only SIGKILL ends it)
It exits when its link to the core closes.
"""
import argparse
import os
import signal
import sys


def _applies(worker_id: str) -> bool:
    only = os.environ.get("STANDIN_ONLY")
    return not only or worker_id in only.split(",")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--sip-port", type=int, required=True)
    parser.add_argument("--rtp-port-min", type=int, required=True)
    parser.add_argument("--rtp-port-max", type=int, required=True)
    parser.add_argument("--core", required=True)
    parser.add_argument("--settings")
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    mine = _applies(args.worker_id)
    env = os.environ.get
    if mine and env("STANDIN_EXIT"):
        return int(env("STANDIN_EXIT"))
    from twisted.internet import endpoints, protocol, reactor, task
    from twisted.protocols import amp

    from switch.wire.amp_auth import key_from_environ, say_hello
    from switch.wire.protocol import Heartbeat

    key = key_from_environ()        # the supervisor's key for this process, as a worker gets it

    reactor.listenUDP(args.sip_port, protocol.DatagramProtocol(), interface="127.0.0.1")
    calls = [c for c in (env("STANDIN_CALLS") or "").split(",") if c] if mine else []

    class Link(amp.AMP):
        def connectionMade(self):
            super().connectionMade()
            if mine and env("STANDIN_NO_HELLO"):
                return
            d = say_hello(self.callRemote, key, worker_id=args.worker_id,
                          capacity=int(env("STANDIN_CAPACITY", "2")),
                          sip_port=args.sip_port, pid=os.getpid())
            d.addCallback(self._beat)
            d.addErrback(lambda f: (print("hello refused:", f.getErrorMessage()), reactor.stop()))

        def _beat(self, _):
            if mine and env("STANDIN_MUTE"):
                return
            self._loop = task.LoopingCall(
                lambda: self.callRemote(Heartbeat, worker_id=args.worker_id,
                                        active_calls=calls).addErrback(lambda f: None))
            self._loop.start(float(env("STANDIN_HEARTBEAT_SECONDS", "0.2")))

        def connectionLost(self, reason):
            super().connectionLost(reason)
            if reactor.running:
                reactor.stop()

    _, host, port = args.core.split(":")
    endpoint = endpoints.TCP4ClientEndpoint(reactor, host, int(port))
    endpoints.connectProtocol(endpoint, Link()).addErrback(
        lambda f: (print("no core:", f.getErrorMessage()), reactor.stop()))
    if mine and env("STANDIN_IGNORE_TERM"):   # after the reactor installed its own handler
        reactor.callWhenRunning(signal.signal, signal.SIGTERM, signal.SIG_IGN)
    print(f"standin {args.worker_id} up on {args.sip_port}", flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
