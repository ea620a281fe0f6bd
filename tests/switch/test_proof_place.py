"""A worker's answer to PlaceProofCall (switch.worker.proof_place): nothing is dialled unless the
core asked (a MAC under this worker's key), once per proof id, for a well-formed request, with a
leg to spare beyond what admitted kiosk calls need. The SIP side is a recording stand-in leg: what
matters here is whether `dial` is ever called (tests/e2e/test_proof_call_e2e.py dials for real)."""
from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
from twisted.internet import defer, task

from switch.wire import protocol as wire
from switch.wire.proof import NoRoom, proof_mac
from switch.worker.call import CallSettings
from switch.worker.proof_place import ProofPlacements

KEY = os.urandom(32)


class Leg:
    def __init__(self, dialled):
        self.dialled, self.gone, self.state = dialled, False, None

    def dial(self, uri, headers=None):
        self.dialled.append(uri)

    def hangup(self):
        self.gone = True


def worker(*, legs_in_use=0, max_legs=4, draining=False, calls=()):
    dialled: list[str] = []
    endpoint = SimpleNamespace(max_legs=max_legs, legs_in_use=legs_in_use,
                               new_leg=lambda: Leg(dialled))
    link = SimpleNamespace(reachable=True, report=lambda *a, **kw: defer.Deferred())
    w = SimpleNamespace(draining=draining, link=link, endpoint=endpoint, calls=list(calls),
                        reactor=task.Clock(), o=SimpleNamespace(call=CallSettings(),
                                                                data_dir="/nonexistent"))
    return ProofPlacements(w), dialled


def request(**change):
    fields = dict(proof_id="p-1", e164="+12125550142", trunks=["sip:+12125550142@10.0.0.5"],
                  language="en", code="481902", caller_name="")
    signed = dict(fields, mac=proof_mac(KEY, **fields))
    signed.update(change)
    return signed


def test_a_request_the_core_signed_is_dialled_on_its_first_trunk():
    proofs, dialled = worker()
    assert proofs.place(KEY, **request())
    assert dialled == ["sip:+12125550142@10.0.0.5"]
    assert proofs.find("p-1") is not None


@pytest.mark.parametrize("change", [
    {"e164": "+19005550123"}, {"code": "000000"}, {"trunks": ["sip:x@evil.example"]},
    {"language": "es"}, {"proof_id": "p-2"}, {"caller_name": "Bank"}, {"mac": b"\0" * 32},
], ids=lambda c: next(iter(c)))
def test_any_argument_changed_after_signing_is_refused_and_nothing_is_dialled(change):
    proofs, dialled = worker()
    with pytest.raises(wire.NotAuthenticated, match="bad MAC"):
        proofs.place(KEY, **request(**change))
    assert dialled == []


def test_a_worker_without_its_key_dials_nothing():
    proofs, dialled = worker()
    with pytest.raises(wire.NotAuthenticated):
        proofs.place(None, **request())
    assert dialled == []


def test_a_replayed_request_is_refused():
    proofs, dialled = worker()
    proofs.place(KEY, **request())
    with pytest.raises(wire.NotAuthenticated, match="placed before"):
        proofs.place(KEY, **request())
    assert len(dialled) == 1


@pytest.mark.parametrize("fields", [
    dict(e164="12125550142"), dict(code="12"), dict(language="fr"), dict(trunks=[]),
    dict(trunks=["tel:+12125550142"]), dict(caller_name="x" * 81),
], ids=lambda f: next(iter(f)))
def test_a_malformed_request_is_refused_naming_the_field(fields):
    proofs, dialled = worker()
    base = dict(proof_id="p-9", e164="+12125550142", trunks=["sip:a@b"], language="en",
                code="123456", caller_name="")
    base.update(fields)
    with pytest.raises(wire.BadRequest, match=next(iter(fields))):
        proofs.place(KEY, mac=proof_mac(KEY, **base), **base)
    assert dialled == []


def test_no_room_when_every_leg_is_taken_or_promised_to_a_kiosk_call():
    proofs, dialled = worker(legs_in_use=4)
    with pytest.raises(NoRoom):
        proofs.place(KEY, **request())
    # three legs in use and one kiosk call still in set-up: its outbound leg is the last one
    setup = SimpleNamespace(called=None, disposition=None)
    proofs, dialled = worker(legs_in_use=3, calls=[setup])
    with pytest.raises(NoRoom):
        proofs.place(KEY, **request())
    proofs, dialled = worker(draining=True)
    with pytest.raises(NoRoom):
        proofs.place(KEY, **request())
    assert dialled == []


def test_a_refused_request_may_come_again_once_there_is_room():
    proofs, dialled = worker(legs_in_use=4)
    with pytest.raises(NoRoom):
        proofs.place(KEY, **request())
    proofs.worker.endpoint.legs_in_use = 0
    assert proofs.place(KEY, **request())      # NoRoom did not burn the proof id
    assert len(dialled) == 1
