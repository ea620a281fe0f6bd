"""A worker's answer to PlaceProofCall: check that the core asked, that there is room, then dial.

The ladder, first refusal wins (nothing is dialled on any refusal):

1. the MAC does not verify under this worker's key (switch.wire.proof): NOT_AUTHENTICATED;
2. this proof id was placed before (a replay): NOT_AUTHENTICATED;
3. a malformed number, code, language or trunk list: BAD_REQUEST;
4. draining, or no leg free beyond those the calls in set-up will need: NO_ROOM.

A proof call takes one leg. Kiosk calls keep priority: a leg that a kiosk call already admitted
will need for its outbound leg is never given to a proof call.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from twisted.logger import Logger

from ivr import catalog
from switch.wire import protocol as wire
from switch.wire.proof import CODE_PATTERN, E164_PATTERN, NoRoom, mac_ok
from switch.worker.proof_call import ProofCall

if TYPE_CHECKING:
    from switch.worker.service import Worker

__all__ = ["ProofPlacements", "PROOF_IDS_REMEMBERED", "TRUNKS_MAX"]

log = Logger()

PROOF_IDS_REMEMBERED = 10_000   # proof ids kept to refuse replays (the oldest forgotten first)
TRUNKS_MAX = 8
TRUNK_LENGTH_MAX = 256
CALLER_NAME_MAX = 80


class ProofPlacements:
    def __init__(self, worker: "Worker") -> None:
        self.worker = worker
        self.calls: set[ProofCall] = set()
        self._seen: OrderedDict[str, None] = OrderedDict()

    def find(self, proof_id: str) -> ProofCall | None:
        return next((c for c in self.calls if c.proof_id == proof_id), None)

    def _room(self) -> bool:
        w = self.worker
        if w.draining or w.link is None or not w.link.reachable:
            return False
        # Kiosk calls that have no outbound leg yet will need one each.
        pending = sum(1 for c in w.calls if c.called is None and c.disposition is None)
        return w.endpoint.max_legs - w.endpoint.legs_in_use - pending >= 1

    def place(self, key: bytes | None, *, proof_id: str, e164: str, trunks: list[str],
              language: str, code: str, caller_name: str, mac: bytes) -> bool:
        fields = dict(proof_id=proof_id, e164=e164, trunks=list(trunks), language=language,
                      code=code, caller_name=caller_name)
        if not mac_ok(key, mac, **fields):
            log.warn("PlaceProofCall {p} refused: bad MAC", p=proof_id)
            raise wire.NotAuthenticated("PlaceProofCall: bad MAC")
        if proof_id in self._seen:
            log.warn("PlaceProofCall {p} refused: placed before", p=proof_id)
            raise wire.NotAuthenticated(f"PlaceProofCall: proof {proof_id} was placed before")
        if not E164_PATTERN.match(e164):
            raise wire.BadRequest(f"e164: {e164!r} is not an E.164 number")
        if not CODE_PATTERN.match(code):
            raise wire.BadRequest("code: 4 to 10 digits")
        if language not in catalog.LANGUAGES:
            raise wire.BadRequest(f"language: {language!r} is not one of {catalog.LANGUAGES}")
        if not trunks or len(trunks) > TRUNKS_MAX or any(
                not t.startswith("sip:") or len(t) > TRUNK_LENGTH_MAX for t in trunks):
            raise wire.BadRequest(f"trunks: 1 to {TRUNKS_MAX} sip: URIs")
        if len(caller_name) > CALLER_NAME_MAX:
            raise wire.BadRequest(f"caller_name: at most {CALLER_NAME_MAX} characters")
        if not self._room():
            raise NoRoom("no leg free for a proof call")
        self._seen[proof_id] = None
        while len(self._seen) > PROOF_IDS_REMEMBERED:
            self._seen.popitem(last=False)
        w = self.worker
        assert w.link is not None
        call = ProofCall(w.reactor, w.endpoint, w.link, w.o.call, proof_id=proof_id, e164=e164,
                         trunks=trunks, language=language, code=code, caller_name=caller_name,
                         data_dir=w.o.data_dir, on_done=self.calls.discard)
        self.calls.add(call)
        call.start()
        return True

    def terminate_all(self) -> None:
        for call in list(self.calls):
            call.terminate("failed")
