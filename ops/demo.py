"""`ics demo`: the product's main job end to end on the embedded database, in about a minute.

Starts (or reuses) the embedded PostgreSQL under the data directory, migrates, loads the demo
facility (directory and rate deck), then one of:

* over real SIP (the default): starts the node as `ics serve` does (core, one media worker, the
  SIP front door) on free ports, and places one call with the pjsua2 simulators (`switch.tools.sim`):
  the kiosk ``kiosk-a1`` dials the front door, follows its 302 to the worker and keys the language,
  the PIN and the number; the called party on a free port of 127.0.0.1 (the demo route is pointed
  there for the run, so nothing needs a fixed port) answers, hears the
  announcement, presses 1, talks `talk_seconds` and hangs up. The timeline shows real wall-clock
  offsets, gathered from the simulators, the core's answers and the worker's log of each prompt.
* scripted (``--no-sip``, where SIP cannot run): drives the same call through the core's AMP
  service as a media worker does, on a simulated clock, so the minute takes no real minute.

Both print the CDR, the call's ledger transfers and the payer's balance, run the ledger's verify
and return 0 only when every invariant holds.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
import re
import signal
import socket
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import ledger
from ledger.money import format_amount
from ops.errors import OpsError

__all__ = ["run_demo", "run_sip_demo", "run_scripted_demo", "load_demo_data", "DemoFailed",
           "TALK_SECONDS", "DEMO_ROUTE_PREFIX"]

KIOSK = "kiosk-a1"             # trusted, but it keys like any kiosk when it presets nothing
LANGUAGE_KEY = "1"             # English
KEYED_PIN = "100011234"        # inmate 10001, PIN 1234
NUMBER = "(951) 555-0101"      # his mother's number; her prepaid account pays
KEYED_NUMBER = "9515550101"
ACCEPT_KEY = "1"
TALK_SECONDS = 65
DEMO_ROUTE_PREFIX = "+"        # the demo directory's route, pointed at the called party's port
RING_SECONDS = 1.0             # the called party lets it ring this long before answering
REACTION_SECONDS = 0.5         # the inmate starts keying this long after a prompt begins
STEP_SECONDS_MAX = 45.0        # a bound on every wait for the next step of the call
SHUTDOWN_SECONDS_MAX = 30.0
RTP_PORTS = 40                 # the simulators' RTP range (two legs need 4)


class DemoFailed(OpsError):
    """The scripted call did not go as planned; the message says which step and why."""


async def load_demo_data(conn, cfg, out=print) -> None:
    from ops.seed import DEMO_DIR, load_directory
    await load_directory(conn, DEMO_DIR / "directory.toml", currency=cfg.ledger.currency,
                         progress=out, shards=cfg.ledger.revenue_shards)
    from rating import store
    if not await conn.fetchval("SELECT true FROM tariff_version WHERE facility_id = 'riverside'"):
        await store.import_deck(conn, (DEMO_DIR / "tariff.csv").read_text(), facility_id="riverside",
                                source="tariff.csv")
        out("loaded the riverside rate deck (config/demo/tariff.csv)")


async def run_demo(cfg, out=print, *, sip: bool = True, talk_seconds: int = TALK_SECONDS,
                   signals: bool = False) -> int:
    """`ics demo`: over real SIP unless `sip` is false. The Twisted asyncio reactor must be
    installed on the running loop. With `signals`, the reactor reaps child processes on SIGCHLD
    and SIGINT/SIGTERM cancel the demo (which then shuts everything down)."""
    from twisted.internet import reactor
    if talk_seconds < 1:
        raise ValueError(f"talk_seconds must be >= 1, got {talk_seconds}")
    # The embedded server starts first: its pg_ctl children must not meet the reactor's SIGCHLD
    # handler while the loop is blocked waiting for them.
    await _prepare_database(cfg, out)
    if not reactor.running:
        reactor.startRunning(installSignalHandlers=signals)
    if signals:
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
    if sip:
        return await run_sip_demo(cfg, reactor, out, talk_seconds=talk_seconds)
    return await run_scripted_demo(cfg, reactor, out, talk_seconds=talk_seconds)


async def _prepare_database(cfg, out) -> None:
    from ops.db import connect
    from ops.migrate import migrate
    out("starting the database and applying the schema ...")
    conn = await connect(cfg)
    try:
        await migrate(conn)
        await load_demo_data(conn, cfg, out)
    finally:
        await conn.close()


# -- over real SIP -------------------------------------------------------------------------------

class _Timeline:
    """The call's events with their wall-clock offsets from the kiosk's first INVITE."""

    def __init__(self, out, clock=time.monotonic):
        self.out, self.clock = out, clock
        self.t0: float | None = None
        self.events: list[tuple[float, str]] = []

    def start(self) -> None:
        self.t0 = self.clock()

    def __call__(self, text: str) -> float:
        now = self.clock()
        offset = 0.0 if self.t0 is None else now - self.t0
        self.events.append((offset, text))
        self.out(f"  +{offset:7.2f}s  {text}")
        return now


@dataclasses.dataclass
class _Heard:
    """One prompt play a leg heard, from the worker's log."""
    at: float              # monotonic time the worker started it
    role: str              # kiosk | called | both
    ids: tuple[str, ...]
    seconds: float
    text: str


# The worker's line for each play (switch.worker.call): "call ID: ROLE hears [IDS] (S.Ss) TEXT";
# the last-minute warning plays to both legs ("both hear").
_HEARS = re.compile(r"call (\S+): (kiosk|called|both) hears? \[([^\]]*)\] \(([0-9.]+)s\) (.*)$")


class _Watch:
    """What the demo waits for: the core's answers, the worker's prompts, the simulators' calls."""

    def __init__(self, timeline: _Timeline):
        self.timeline = timeline
        self.heard: list[_Heard] = []
        self.answers: dict[str, list] = {}

    def answered(self, command: str, answer) -> None:
        self.answers.setdefault(command, []).append(answer)

    def worker_line(self, line: str) -> None:
        m = _HEARS.search(line)
        if m is None:
            return
        heard = _Heard(time.monotonic(), m.group(2), tuple(filter(None, m.group(3).split(","))),
                       float(m.group(4)), m.group(5).strip())
        self.heard.append(heard)
        who = {"kiosk": "kiosk", "called": "called party", "both": "both parties"}[heard.role]
        self.timeline(f"{who} hears ({heard.seconds:.1f}s): {_shorten(_readable(heard.text))}")

    def heard_prompt(self, role: str, prompt_id: str) -> _Heard | None:
        return next((h for h in self.heard if h.role == role and prompt_id in h.ids), None)

    async def until(self, predicate, what: str, timeout: float = STEP_SECONDS_MAX):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if loop.time() > deadline:
                raise DemoFailed(f"{what}: still waiting after {timeout:.0f}s")
            await asyncio.sleep(0.02)


_CLIP = re.compile(r"<([a-z]{2})/([A-Za-z0-9_]+)\.wav>")     # a WAV clip in a Play's transcript


def _readable(transcript: str) -> str:
    """A transcript with catalog clips given as files spoken out, and generated names marked."""
    from ivr import catalog

    def words(m: re.Match) -> str:
        try:
            return catalog.text(m.group(2), m.group(1))
        except (KeyError, ValueError):
            return "<spoken name>" if re.fullmatch(r"[0-9a-f]{24}", m.group(2)) else m.group(0)
    return _CLIP.sub(words, transcript)


def _shorten(text: str, width: int = 110) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _tap_core(core, watch: _Watch, event) -> None:
    """Wrap the core's call-control operations on this node so the timeline shows each answer."""

    def tap(name, describe):
        original = getattr(core, name)

        async def tapped(*args, **kwargs):
            answer = await original(*args, **kwargs)
            try:
                text = describe(answer, *args, **kwargs)
            except Exception as e:       # a description must never break the call
                text = f"{name}: {answer!r} ({e!r})"
            if text:
                event(text)
            watch.answered(name, answer)
            return answer
        setattr(core, name, tapped)

    tap("check_pin", lambda a, kiosk, keyed, source=None, **kw:
        f"core: PIN ok, inmate {a.inmate_id} (language {a.language})" if a.ok else
        f"core: PIN refused ({a.attempts_left} attempts left{', locked' if a.locked else ''})")
    tap("authorize", lambda a, *args, **kw:
        (f"core: authorized call {a.call_id[:8]} to {a.e164}: "
         f"{format_amount(a.rate_micros_per_minute)}/min, paid by {a.funding}, up to "
         f"{a.max_seconds}s, recorded={a.record}") if a.allow else
        f"core: call refused ({a.reason})")
    tap("accept", lambda g, call_id: f"core: accepted: period 1 held, grant until {g.grant_until}s"
        f"{' (last)' if g.last else ''}")
    tap("continue_", lambda g, call_id, period, talk_seconds:
        f"core: Continue after period {period} ({talk_seconds}s talked): posted, grant until "
        f"{g.grant_until}s{' (last)' if g.last else ''}")
    tap("end", lambda e, call_id, talk_seconds, disposition, **kw:
        f"core: End ({disposition}, {talk_seconds}s talked): billed {e.billed_seconds}s, "
        f"charged {format_amount(e.charged_micros)}; CDR written")


def _free_udp_port(avoid: range = range(0)) -> int:
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in avoid:
            return port
    raise DemoFailed("no free UDP port on 127.0.0.1")


def _free_udp_range(n: int, avoid: range = range(0)) -> range:
    """`n` consecutive UDP ports on 127.0.0.1, starting even, all free right now."""
    for _ in range(200):
        base = random.randrange(20_000, 60_000 - n, 2)
        ports = range(base, base + n)
        if ports.start < avoid.stop and avoid.start < ports.stop:
            continue
        socks = []
        try:
            for p in ports:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return ports
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise DemoFailed(f"no {n} free consecutive UDP ports on 127.0.0.1")


def _demo_config(cfg, called_port: int):
    """The node's config with SIP and RTP on free ports, so a running `ics serve` is untouched."""
    rtp = _free_udp_range(cfg.switch.rtp_ports_per_worker,
                          avoid=range(called_port, called_port + 1))
    taken = range(min(rtp.start, called_port), max(rtp.stop, called_port + 1))
    switch = dataclasses.replace(cfg.switch, workers=1, sip_host="127.0.0.1",
                                 frontdoor_port=_free_udp_port(taken),
                                 worker_sip_port_base=_free_udp_port(taken),
                                 rtp_port_base=rtp.start)
    if switch.frontdoor_port == switch.worker_sip_port_base:
        switch = dataclasses.replace(switch, worker_sip_port_base=_free_udp_port(
            range(switch.frontdoor_port, switch.frontdoor_port + 1)))
    return dataclasses.replace(cfg, switch=switch)


def _observe_worker_output(watch: _Watch):
    """Feed the worker's log lines (relayed by the supervisor) to `watch`; returns the observer."""
    from twisted.logger import globalLogPublisher

    def observer(event):
        if event.get("event") == "worker_output" and isinstance(event.get("line"), str):
            watch.worker_line(event["line"])
    globalLogPublisher.addObserver(observer)
    return observer


async def run_sip_demo(cfg, reactor, out=print, *, talk_seconds: int = TALK_SECONDS) -> int:
    """One scripted call over real SIP through a node started here (see the module docstring)."""
    from ops.node import start_node

    called_port = _free_udp_port()
    cfg = _demo_config(cfg, called_port)
    demo_dir = Path(cfg.data_dir) / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    timeline = _Timeline(out)
    watch = _Watch(timeline)
    observer = _observe_worker_output(watch)
    node = phone = None
    try:
        node = await start_node(cfg, reactor, workers=1, amp_port=0, http_port=0,
                                frontdoor_port=cfg.switch.frontdoor_port)
        _tap_core(node.core, watch, timeline)
        from switch.provisioning.directory import add_route
        async with node.pool.acquire() as conn:     # the trunk rings the demo's called party
            await add_route(conn, DEMO_ROUTE_PREFIX, f"sip:{{e164}}@127.0.0.1:{called_port}")
        out(f"node up: SIP front door 127.0.0.1:{cfg.switch.frontdoor_port}, media worker w1 on "
            f"127.0.0.1:{cfg.switch.worker_sip_port_base}, core AMP :{node.amp_port}, "
            f"HTTP :{node.http_port}; waiting for the worker ...")
        await watch.until(lambda: node.supervisor.table.slots(reactor.seconds())["free"] > 0,
                          "the media worker never said Hello", timeout=60)
        phone = _phones(reactor, called_port)
        call_id = await _SipCall(cfg, phone, watch, timeline, demo_dir, talk_seconds,
                                 called_port).run(out)
        async with node.pool.acquire() as conn:
            ok = await _print_settlement(conn, call_id, out)
        return 0 if ok else 1
    except DemoFailed as e:
        out(f"\ndemo failed: {e}")
        return 1
    finally:
        await _shutdown(node, phone, observer)


def _phones(reactor, called_port: int):
    """The kiosk and the called party: one pjsua2 endpoint (one per process) on the demo route's
    port, so it receives the worker's trunk INVITE."""
    from switch.tools.sim import Phone
    rtp = _free_udp_range(RTP_PORTS)
    phone = Phone(reactor, sip_port=called_port, rtp_port_min=rtp.start,
                  rtp_port_max=rtp.stop - 1)
    with _stdout_silenced():        # pjlib prints its start-up lines before logging is set
        phone.start()
    return phone


@contextlib.contextmanager
def _stdout_silenced():
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


class _SipCall:
    """The script of the demo call, step by step; each wait is bounded and names its step."""

    def __init__(self, cfg, phone, watch: _Watch, timeline: _Timeline, demo_dir: Path,
                 talk_seconds: int, called_port: int):
        self.cfg, self.phone, self.watch, self.timeline = cfg, phone, watch, timeline
        self.called_port = called_port
        self.demo_dir, self.talk_seconds = demo_dir, talk_seconds
        self.called_calls: list = []
        self.recording = demo_dir / "called-party-heard.wav"

    async def run(self, out) -> str:
        from switch.tools.sim import write_tone
        w, event, phone = self.watch, self.timeline, self.phone
        door = self.cfg.switch.frontdoor_port
        inmate_voice = write_tone(self.demo_dir / "inmate-voice.wav", 350, 1.0, amplitude=6000)
        family_voice = write_tone(self.demo_dir / "family-voice.wav", 620, 1.0, amplitude=6000)
        self.recording.unlink(missing_ok=True)
        phone.answer_delay = RING_SECONDS
        phone.on_call = self._trunk_invite
        phone.on_redirect = self._redirected

        out(f"\ncall timeline (wall clock; billing period {self.cfg.core.period_seconds}s; "
            f"the called party talks {self.talk_seconds}s):")
        event.start()
        kiosk = phone.dial(f"sip:ics@127.0.0.1:{door}", caller=KIOSK)
        event(f"kiosk {KIOSK} sends INVITE to the SIP front door (127.0.0.1:{door})")
        kiosk.confirmed.addCallback(lambda _: event("worker answers the kiosk (200 OK)"))
        await w.until(lambda: kiosk.up or kiosk.gone, "the worker never answered the kiosk")
        if kiosk.gone:
            raise DemoFailed(f"the kiosk's call failed with SIP {kiosk.status_code}")

        await w.until(lambda: w.heard_prompt("kiosk", "language_choice"),
                      "the kiosk never heard the language menu")
        await asyncio.sleep(REACTION_SECONDS)
        kiosk.send_digits(LANGUAGE_KEY)
        event(f"inmate presses {LANGUAGE_KEY} (English)")
        await w.until(lambda: w.heard_prompt("kiosk", "pin_enter"),
                      "the kiosk never heard the PIN prompt")
        await asyncio.sleep(REACTION_SECONDS)
        kiosk.send_digits(KEYED_PIN + "#")
        event(f"inmate keys the PIN {KEYED_PIN[:5]}**** and #")
        pin = (await w.until(lambda: w.answers.get("check_pin"),
                             "the core was never asked to check the PIN"))[0]
        if not pin.ok:
            raise DemoFailed(f"the core refused the PIN: {pin}")
        await w.until(lambda: w.heard_prompt("kiosk", "number_enter"),
                      "the kiosk never heard the number prompt")
        await asyncio.sleep(REACTION_SECONDS)
        kiosk.send_digits(KEYED_NUMBER + "#")
        event(f"inmate keys the number {KEYED_NUMBER} and #")
        auth = (await w.until(lambda: w.answers.get("authorize"),
                              "the core was never asked to authorize the call"))[0]
        if not auth.allow:
            raise DemoFailed(f"the core refused the call: {auth.reason}")

        called = (await w.until(lambda: self.called_calls, "the trunk INVITE never came"))[0]
        await w.until(lambda: called.up or called.gone, "the called party never answered")
        if called.gone:
            raise DemoFailed("the worker gave up on the called party before it answered")
        await _settle(called.media, "the called party's audio never came up")
        called.record(str(self.recording))
        recording_started = time.monotonic()
        menu = await w.until(
            lambda: next((h for h in w.heard if h.role == "called"
                          and any(i.startswith("cp_menu_accept") for i in h.ids)), None),
            "the called party never heard the menu")
        # Press 1 once the whole announcement has played, as a person listening would.
        await asyncio.sleep(max(0.0, menu.at + menu.seconds + 0.5 - time.monotonic()))
        pressed_at = time.monotonic()
        called.send_digits(ACCEPT_KEY)
        event(f"called party presses {ACCEPT_KEY} (accept)")
        grant = (await w.until(lambda: w.answers.get("accept"),
                               "the core was never asked to accept"))[0]
        kiosk.talk(inmate_voice)
        called.talk(family_voice)
        event("legs bridged and recorded: the inmate and the called party talk")
        talk_began = time.monotonic()
        await w.until(lambda: called.gone or kiosk.gone
                      or time.monotonic() - talk_began >= self.talk_seconds,
                      "talk", timeout=self.talk_seconds + STEP_SECONDS_MAX)
        if called.gone or kiosk.gone:
            raise DemoFailed(f"the call ended after {time.monotonic() - talk_began:.1f}s of "
                             f"talk, before the called party hung up (grant until "
                             f"{grant.grant_until}s)")
        called.hangup()
        event(f"called party hangs up after {time.monotonic() - talk_began:.1f}s of talk")
        await w.until(lambda: w.answers.get("end"), "the worker never reported End")
        await w.until(lambda: kiosk.gone, "the worker never released the kiosk")
        event("kiosk leg released (BYE from the worker)")
        self._report_heard(out, pressed_at - recording_started)
        return auth.call_id

    def _trunk_invite(self, call) -> None:
        self.called_calls.append(call)
        self.timeline(f"trunk INVITE reaches the called party ({call.incoming.request_user} at "
                      f"127.0.0.1:{self.called_port}); it rings")
        call.confirmed.addCallback(lambda _: self.timeline("called party answers (200 OK)"))

    def _redirected(self, call, target: str) -> None:
        self.timeline(f"front door answers 302 Moved Temporarily, Contact: <{target}>")
        self.timeline(f"kiosk sends INVITE to media worker w1 ({target.split('@')[-1]})")

    def _report_heard(self, out, before_key: float) -> None:
        from switch.tools.sim import loud_spans, wav_complete
        out(f"\nwhat the called party heard (recorded in {self.recording}):")
        for h in self.watch.heard:
            if h.role == "called":
                out(f"  {h.seconds:4.1f}s  {_readable(h.text)}")
                out(f"         prompts: {', '.join(h.ids)}")
        deadline = time.monotonic() + 10
        while not wav_complete(self.recording) and time.monotonic() < deadline:
            time.sleep(0.05)       # pjmedia writes the header a moment after the call
        if not wav_complete(self.recording):
            out("  (the recording did not close in time; no measurement)")
            return
        spans = loud_spans(str(self.recording))
        prompts = sum(min(e, before_key) - s for s, e in spans if s < before_key)
        talked = sum(e - max(s, before_key) for s, e in spans if e > before_key)
        out(f"  measured in that recording: {prompts:.1f}s of prompt audio before pressing "
            f"{ACCEPT_KEY}, then {talked:.1f}s of the inmate's voice (a 350 Hz tone)")


async def _settle(d, what: str, timeout: float = STEP_SECONDS_MAX):
    try:
        return await asyncio.wait_for(d.asFuture(asyncio.get_running_loop()), timeout)
    except asyncio.TimeoutError:
        raise DemoFailed(f"{what}: still waiting after {timeout:.0f}s") from None


async def _shutdown(node, phone, observer) -> None:
    """Hang up and destroy the simulators' endpoint, then stop the workers and the node."""
    from twisted.logger import globalLogPublisher
    loop = asyncio.get_running_loop()
    try:
        if phone is not None:
            for call in phone.calls:
                call.hangup()
            await asyncio.wait_for(phone.shutdown().asFuture(loop), SHUTDOWN_SECONDS_MAX)
    finally:
        if node is not None:
            await asyncio.wait_for(node.stop(), SHUTDOWN_SECONDS_MAX)
        globalLogPublisher.removeObserver(observer)


# -- scripted, without SIP ----------------------------------------------------------------------

class SimulatedClock:
    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=1)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)


async def run_scripted_demo(cfg, reactor, out=print, *, talk_seconds: int = TALK_SECONDS) -> int:
    """The call driven through the core's AMP service as a worker would, on a simulated clock."""
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
    from twisted.protocols import amp

    from switch.wire import amp_auth
    from switch.wire import protocol as wire
    from ops.node import start_node
    from switch.control.tariffs import Pricing

    loop = asyncio.get_running_loop()
    node = await start_node(cfg, reactor, workers=0, pricing=Pricing(), amp_port=0, http_port=0)
    clock = SimulatedClock()
    node.core.clock = clock
    link = None
    timeline: list[str] = []
    t0 = clock.now

    def event(text: str) -> None:
        line = f"  +{int((clock.now - t0).total_seconds()):>4d}s  {text}"
        timeline.append(line)
        out(line)

    async def call(command, **kw):
        return await link.callRemote(command, **kw).asFuture(loop)

    try:
        link = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", node.amp_port),
                                     amp.AMP()).asFuture(loop)
        worker_id = "demo"
        await amp_auth.say_hello(link.callRemote, node.workers.key_for(worker_id),
                                 worker_id=worker_id, capacity=1, sip_port=5060,
                                 pid=os.getpid()).asFuture(loop)
        out(f"\ncall timeline (no SIP: a scripted worker, simulated clock, billing period "
            f"{cfg.core.period_seconds}s):")
        event(f"kiosk {KIOSK}: inmate keys PIN")
        pin = await call(wire.CheckPin, kiosk=KIOSK, pin=KEYED_PIN)
        if not pin["ok"]:
            out(f"PIN refused: {pin}")
            return 1
        event(f"PIN ok: inmate {pin['inmate_id']} (language {pin['language']})")
        event(f"inmate dials {NUMBER}")
        a = await call(wire.Authorize, kiosk=KIOSK, inmate_id=pin["inmate_id"], number=NUMBER,
                       pin_session=pin["pin_session"])
        if not a["allow"]:
            out(f"call refused: {a['reason']}")
            return 1
        event(f"authorized: call {a['call_id'][:8]}, {a['e164']}, "
              f"{format_amount(a['rate_micros_per_minute'])}/min, paid by {a['funding']}, "
              f"up to {a['max_seconds']}s, recorded={a['record']}")
        event(f"called party hears: prepaid call from {a['inmate_name']}, an inmate at "
              f"{a['facility_name']}; recorded; {format_amount(a['rate_micros_per_minute'])} "
              "per minute; press 1 to accept")
        clock.advance(8)
        event("called party presses 1")
        g = await call(wire.Accept, call_id=a["call_id"])
        event(f"accepted: first period held, grant until {g['grant_until']}s of talk")
        talk, period = 0, 1
        while talk < talk_seconds:
            step = min(g["grant_until"], talk_seconds) - talk
            clock.advance(step)
            talk += step
            if talk >= talk_seconds:
                break
            g = await call(wire.Continue, call_id=a["call_id"], period=period, talk_seconds=talk)
            event(f"period {period} ends at {talk}s: posted; next grant until "
                  f"{g['grant_until']}s{' (last)' if g['last'] else ''}")
            period += 1
        event(f"called party hangs up after {talk}s of talk")
        e = await call(wire.End, call_id=a["call_id"], talk_seconds=talk, disposition="completed")
        event(f"ended: billed {e['billed_seconds']}s, charged {format_amount(e['charged_micros'])}")
        async with node.pool.acquire() as c:
            ok = await _print_settlement(c, a["call_id"], out)
        return 0 if ok else 1
    finally:
        if link is not None:
            link.transport.loseConnection()
        await node.stop()


# -- the money of the call ----------------------------------------------------------------------

CDR_FIELDS = ("call_id", "facility_id", "kiosk_id", "inmate_id", "e164", "jurisdiction",
              "payment_type", "funding_account", "talk_seconds", "billed_seconds", "disposition",
              "call_micros", "tax_micros", "total_micros", "tariff_version", "recording",
              "worker_id", "trunk", "sip_code")


async def _print_settlement(c, call_id: str, out) -> bool:
    """Print the call's CDR, its ledger transfers and the payer's balance; run verify."""
    cdr = await c.fetchrow("SELECT * FROM cdr WHERE call_id = $1::uuid", call_id)
    if cdr is None:
        out(f"\nno CDR for call {call_id}")
        return False
    out("\nCDR:")
    for key in CDR_FIELDS:
        if cdr[key] is not None:
            out(f"  {key:<16} {cdr[key]}")
    charges = json.loads(cdr["charges"])
    for s in charges.get("spans", []):
        out(f"  span @{s['offset']}s: {s['billed_seconds']}s billed at "
            f"{format_amount(s['price_micros'])}/{s['per_seconds']}s = "
            f"{format_amount(s['amount_micros'])} ({s['line']})")
    for s in charges.get("surcharges", []):
        out(f"  {s['kind']} {s['name']}: {format_amount(s['amount_micros'])}")
    out("\nledger transfers of the call:")
    rows = await c.fetch(
        "SELECT t.id, t.kind, t.debit_account_id, t.credit_account_id, t.amount, t.code "
        "FROM ledger_transfer t WHERE t.id = ANY($1::uuid[]) ORDER BY t.seq",
        list(cdr["transfer_ids"]))
    for r in rows:
        out(f"  {str(r['id'])[:8]}  {_kind(r['kind']):<5} {r['debit_account_id']:<22} -> "
            f"{r['credit_account_id']:<12} {format_amount(r['amount']):>8}  {r['code']}")
    if cdr["funding_account"]:
        bal = await ledger.balance(c, cdr["funding_account"])
        out(f"\nbalance of {cdr['funding_account']}: available {format_amount(bal.available)}, "
            f"pending {format_amount(bal.pending)}")
    report = await ledger.verify(c)
    out(f"ledger verify: {'ok, every invariant holds' if report.ok else report}")
    return report.ok


def _kind(value) -> str:
    try:
        return ledger.TransferKind(value).name.lower()
    except ValueError:
        return str(value)
