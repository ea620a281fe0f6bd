"""A scripted core speaking the real AMP protocol (switch.wire.protocol), for the worker's tests.

It grants talk time in periods of `period` seconds up to `max_seconds`, records every command it
receives, and can vanish (`go_away()`: stop listening, drop every link) to test the fail-safe rule.
"""
from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from twisted.internet import protocol
from twisted.protocols import amp

from switch.wire import protocol as wire


@dataclass
class Script:
    trunks: list[str] = field(default_factory=list)
    period: int = 2
    max_seconds: int = 6
    warn_lead: int | None = None       # answer warn_at = until - warn_lead on the last grant
    record: bool = True
    privileged: bool = False
    passive_accept: bool = False
    pin_ok: bool = True
    allow: bool = True
    deny_reason: str = "not_approved"
    kiosk_sources: tuple[str, ...] | None = None   # IPs the kiosk may call from (None: any)
    pin_busy: bool = False             # CheckPin answers CORE_BUSY (an overloaded core)


class _CoreAMP(amp.AMP):
    def __init__(self, core: "FakeCore"):
        super().__init__()
        self.core = core

    def connectionMade(self):
        super().connectionMade()
        self.core.links.append(self)

    def connectionLost(self, reason):
        super().connectionLost(reason)
        if self in self.core.links:
            self.core.links.remove(self)

    def _log(self, name, **kw):
        kw["at"] = self.core.reactor.seconds()
        self.core.received.append((name, kw))

    @wire.Challenge.responder
    def challenge(self):
        return {"nonce": os.urandom(32)}     # the fake core takes any proof

    @wire.Hello.responder
    def hello(self, **kw):
        self._log("Hello", **kw)
        return {"node": "fake"}

    @wire.Heartbeat.responder
    def heartbeat(self, **kw):
        self._log("Heartbeat", **kw)
        return {"unknown_calls": []}

    @wire.AdmitKiosk.responder
    def admit_kiosk(self, **kw):
        self._log("AdmitKiosk", **kw)
        s = self.core.script
        if s.kiosk_sources is not None and kw.get("source_ip") not in s.kiosk_sources:
            raise wire.KioskUnknown(f"kiosk_source_mismatch: {kw['kiosk']} from "
                                    f"{kw.get('source_ip')}")
        return {"admitted": True}

    @wire.CheckPin.responder
    def check_pin(self, **kw):
        self._log("CheckPin", **kw)
        s = self.core.script
        if s.kiosk_sources is not None and kw.get("source_ip") not in s.kiosk_sources:
            raise wire.KioskUnknown(f"kiosk_source_mismatch: {kw['kiosk']} from "
                                    f"{kw.get('source_ip')}")
        if s.pin_busy:
            raise wire.CoreBusy("PIN checks busy: none free within 1s (2 at once)")
        session = uuid.uuid4().hex if s.pin_ok else None
        if session:
            self.core.pin_sessions.add(session)
        return {"ok": s.pin_ok, "locked": False, "attempts_left": 2 if not s.pin_ok else 3,
                "inmate_id": "1001" if s.pin_ok else None, "language": "en",
                "pin_session": session}

    @wire.Authorize.responder
    def authorize(self, **kw):
        self._log("Authorize", **kw)
        s = self.core.script
        if s.kiosk_sources is not None and kw.get("source_ip") not in s.kiosk_sources:
            return {"allow": False, "reason": "kiosk_source_mismatch"}
        if kw.get("pin_session") not in self.core.pin_sessions:
            return {"allow": False, "reason": "pin_invalid"}
        self.core.pin_sessions.discard(kw["pin_session"])
        if not s.allow:
            return {"allow": False, "reason": s.deny_reason}
        call_id = str(uuid.uuid4())
        self.core.authorized.append(call_id)
        return {"allow": True, "call_id": call_id, "e164": kw["number"], "trunks": s.trunks,
                "rate_micros_per_minute": 210_000, "max_seconds": s.max_seconds,
                # As the script says, even record and privileged together: the worker's own
                # guard must refuse to record a privileged call (the fake does not do it for it).
                "record": s.record, "privileged": s.privileged,
                "passive_accept": s.passive_accept, "language": "en",
                "inmate_name": "Test Inmate", "facility_name": "Test Facility",
                "funding": "prepaid"}

    def _grant(self, until):
        s = self.core.script
        until = min(until, s.max_seconds)
        last = until >= s.max_seconds
        answer = {"grant_until": until, "last": last}
        if last and s.warn_lead is not None:
            answer["warn_at"] = until - s.warn_lead
        return answer

    @wire.Accept.responder
    def accept(self, call_id):
        self._log("Accept", call_id=call_id)
        return self._grant(self.core.script.period)

    @wire.Continue.responder
    def continue_(self, call_id, period, talk_seconds):
        self._log("Continue", call_id=call_id, period=period, talk_seconds=talk_seconds)
        return self._grant((period + 1) * self.core.script.period)

    @wire.End.responder
    def end(self, **kw):
        self._log("End", **kw)
        self.core.ends[kw["call_id"]] = dict(kw, at=self.core.reactor.seconds())
        return {"billed_seconds": kw["talk_seconds"], "charged_micros": 0,
                "cdr_id": kw["call_id"]}

    @wire.SetupFailed.responder
    def setup_failed(self, **kw):
        self._log("SetupFailed", **kw)
        return {"counted": True}

    @wire.Block.responder
    def block(self, call_id, scope):
        self._log("Block", call_id=call_id, scope=scope)
        return {"blocked": True}


class FakeCore:
    def __init__(self, reactor, script: Script | None = None):
        self.reactor = reactor
        self.script = script or Script()
        self.received: list[tuple[str, dict]] = []
        self.links: list[_CoreAMP] = []
        self.authorized: list[str] = []
        self.pin_sessions: set[str] = set()    # issued by CheckPin, each good for one Authorize
        self.ends: dict[str, dict] = {}
        self._port = None

    def listen(self, port: int = 0) -> int:
        factory = protocol.Factory.forProtocol(lambda: _CoreAMP(self))
        self._port = self.reactor.listenTCP(port, factory, interface="127.0.0.1")
        return self._port.getHost().port

    def names(self, name: str) -> list[dict]:
        return [kw for n, kw in self.received if n == name]

    def go_away(self) -> None:
        """The core vanishes: no listener, every link cut. As when a core process dies, what it
        had already answered still reaches the worker (the kernel sends what was written); an
        abort here raced the answer the test had just seen asked for (an Accept lost on the
        way made the worker fail the call instead of running out its grant)."""
        if self._port is not None:
            self._port.stopListening()
            self._port = None
        for link in list(self.links):
            link.transport.loseConnection()

    def close(self) -> None:
        self.go_away()


# -- a worker under test, in its own process (pjsua2 allows one endpoint per process) ----------

def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_outside(span: tuple[int, int], kind: int = socket.SOCK_DGRAM) -> int:
    """A free port outside `span`, an RTP range picked a moment ago: its sockets are closed, so
    the kernel may hand out one of its ports, which a node's settings refuse as overlapping."""
    while True:
        port = free_port(kind)
        if not span[0] <= port <= span[1]:
            return port


def free_rtp_range(n: int = 40) -> tuple[int, int]:
    """A run of `n` UDP ports free right now (RTP and RTCP pairs)."""
    for _ in range(200):
        base = random.randrange(20_000, 60_000, 2)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base, base + n - 1
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free RTP port range")


WORKER_TEST_CONFIG = {
    "switch": {"heartbeat_seconds": 1.0},
    "ivr": {"first_digit_timeout_seconds": 8.0, "choice_timeout_seconds": 8.0},
    "worker": {"trunk_setup_seconds": 2.0,
               "trunk_answer_seconds": 10.0, "continue_lead_seconds": 0.7,
               "warning_seconds": 1, "core_answer_seconds": 1.0},
}


def _toml(config: dict) -> str:
    lines = []
    for section, values in config.items():
        lines.append(f"[{section}]")
        for k, v in values.items():
            lines.append(f"{k} = {v!r}" if not isinstance(v, bool) else f"{k} = {str(v).lower()}")
    return "\n".join(lines).replace("'", '"') + "\n"



def _worker_settings(config_path: Path) -> str:
    """What the node's supervisor would tell a worker, from the test's config file."""
    from ops.config import load
    from ops.node import worker_process_settings
    return worker_process_settings(load(config_path, environ={})).to_json()

class WorkerProcess:
    """`python -m switch.worker ...` with its output in `log_path`."""

    def __init__(self, tmp: Path, core_port: int, *, worker_id: str = "w1",
                 overrides: dict | None = None):
        config = {k: dict(v) for k, v in WORKER_TEST_CONFIG.items()}
        for section, values in (overrides or {}).items():
            config.setdefault(section, {}).update(values)
        self.config_path = tmp / "worker.toml"
        self.config_path.write_text(_toml(config))
        self.data_dir = tmp / "worker-data"
        self.sip_port = free_port()
        self.rtp = free_rtp_range()
        self.log_path = tmp / "worker.log"
        self.argv = [sys.executable, "-m", "switch.worker", "--worker-id", worker_id,
                     "--sip-port", str(self.sip_port), "--rtp-port-min", str(self.rtp[0]),
                     "--rtp-port-max", str(self.rtp[1]), "--core", f"tcp:127.0.0.1:{core_port}",
                     "--settings", _worker_settings(self.config_path), "--data-dir",
                     str(self.data_dir)]
        self._log = open(self.log_path, "wb")
        env = dict(os.environ, ICS_DATABASE_URL="")
        self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env, cwd=Path(__file__).resolve().parents[2])

    def uri(self, user: str) -> str:
        return f"sip:{user}@127.0.0.1:{self.sip_port}"

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then wait without blocking the loop (the simulators must answer its BYEs)."""
        import asyncio
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while self.proc.poll() is None and loop.time() < deadline:
                await asyncio.sleep(0.05)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode
