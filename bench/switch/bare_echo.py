"""The cost reference of bench/switch.py: a bare pjsua2 process that answers every call and loops
its RTP back to the caller, with the media worker's codec settings and nothing else (no IVR, no
core, no second leg, no recording). It hangs up a call `--hangup-after` seconds after answering,
as the called party does in the switch's run.

    python bench/switch/bare_echo.py --sip-port P --rtp-port-min A --rtp-port-max B
                                     [--hangup-after 30] [--poll-ms 10]

pjsua runs on the main thread (threadCnt=0) and this loop hands it control in C for up to
`--poll-ms` at a time (`libHandleEvents`): the plainest way to drive pjsua2 from Python. It holds
as many calls as the pjsua build allows (4 here). SIGTERM ends it.
"""
from __future__ import annotations

import argparse
import signal
import time

import pjsua2 as pj

KEEP_CODECS = ("PCMU/8000/1", "PCMA/8000/1")     # as switch/worker/media.py


class Call(pj.Call):
    def __init__(self, acc, call_id, calls):
        super().__init__(acc, call_id)
        self.calls = calls
        self.answered_at = None
        self.ended = False

    def onCallState(self, prm):
        ci = self.getInfo()
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED and self.answered_at is None:
            self.answered_at = time.monotonic()
        elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.ended = True              # dropped by the loop, never inside the callback

    def onCallMediaState(self, prm):
        ci = self.getInfo()
        for i, mi in enumerate(ci.media):
            if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                aud = self.getAudioMedia(i)
                aud.startTransmit(aud)     # the caller hears its own RTP back
                return


class Account(pj.Account):
    def __init__(self, calls):
        super().__init__()
        self.calls = calls

    def onIncomingCall(self, prm):
        call = Call(self, prm.callId, self.calls)
        self.calls.append(call)
        op = pj.CallOpParam()
        op.statusCode = 200
        call.answer(op)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sip-port", type=int, required=True)
    p.add_argument("--rtp-port-min", type=int, required=True)
    p.add_argument("--rtp-port-max", type=int, required=True)
    p.add_argument("--hangup-after", type=float, default=30.0)
    p.add_argument("--poll-ms", type=int, default=10)
    a = p.parse_args()

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.uaConfig.maxCalls = 1024
    cfg.logConfig.level = 0
    cfg.logConfig.consoleLevel = 0
    cfg.medConfig.clockRate = 8000
    cfg.medConfig.sndClockRate = 8000
    cfg.medConfig.noVad = True
    cfg.medConfig.ecTailLen = 0
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.port = a.sip_port
    tcfg.boundAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    for codec in ep.codecEnum2():
        ep.codecSetPriority(codec.codecId, 255 if codec.codecId in KEEP_CODECS else 0)
    calls: list[Call] = []
    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:echo@127.0.0.1:{a.sip_port}"
    acfg.mediaConfig.transportConfig.port = a.rtp_port_min
    acfg.mediaConfig.transportConfig.portRange = a.rtp_port_max - a.rtp_port_min
    acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    acc = Account(calls)
    acc.create(acfg, True)

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    print(f"bare_echo: SIP 127.0.0.1:{a.sip_port}", flush=True)
    while not stop:
        ep.libHandleEvents(a.poll_ms)
        now = time.monotonic()
        for call in list(calls):
            if call.ended:
                calls.remove(call)
            elif call.answered_at is not None and now - call.answered_at >= a.hangup_after:
                call.answered_at = float("inf")
                try:
                    call.hangup(pj.CallOpParam())
                except pj.Error:
                    pass
    ep.hangupAllCalls()
    deadline = time.monotonic() + 3
    while calls and time.monotonic() < deadline:
        ep.libHandleEvents(20)
        calls[:] = [c for c in calls if not c.ended]
    calls.clear()
    acc.shutdown()
    ep.libDestroy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
