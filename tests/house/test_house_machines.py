"""Every state machine refuses an illegal move with one error type, and the two IVR flows share
one holder: a driver catches `ivr.flows.machine.IllegalMove` and reads what, where and value."""

from __future__ import annotations

import pytest

from ivr.flows import called_party, inmate, moves
from ivr.flows.machine import Flow, IllegalMove
from switch.rules import session
from switch.processes import supervisor
from switch.worker import call as worker_call
from switch.worker import grant


def _session():
    session.step(session.CallState.ENDED, session.Event.ACCEPT)


def _talk():
    grant.next_state(grant.TalkState.ENDED, grant.TalkEvent.GRANTED)


def _phase():
    worker_call.next_phase(worker_call.Phase.ENDED, worker_call.Phase.TALKING)


def _worker():
    supervisor.next_state("w1", supervisor.WorkerState.DEAD, supervisor.WorkerEvent.HEARTBEAT)


def _flow():
    flow = inmate.InmateFlow(inmate.IvrSettings(), inmate_id="i-1")
    flow.feed(moves.Hangup())
    flow.feed(moves.Timeout())


# (raises it, its class, what, where, text the message keeps)
MACHINES = [
    (_session, session.IllegalTransition, "call session", session.CallState.ENDED,
     "accept is not allowed in state ended"),
    (_talk, grant.IllegalTalkMove, "talk grant", grant.TalkState.ENDED,
     "granted is not allowed in talk state ended"),
    (_phase, worker_call.IllegalPhaseMove, "call phase", worker_call.Phase.ENDED,
     "ended -> talking"),
    (_worker, supervisor.IllegalWorkerTransition, "worker w1", supervisor.WorkerState.DEAD,
     "worker w1: heartbeat is not possible while dead"),
    (_flow, moves.IllegalMove, "inmate flow", inmate.Phase.ENDED,
     "inmate flow in phase ENDED cannot take"),
]


@pytest.mark.parametrize("move,cls,what,where,text", MACHINES,
                         ids=[m[1].__name__ for m in MACHINES])
def test_every_machine_refuses_an_illegal_move_with_the_shared_error(move, cls, what, where,
                                                                     text):
    with pytest.raises(IllegalMove) as refused:
        move()
    e = refused.value
    assert type(e) is cls
    assert (e.what, e.where) == (what, where)
    assert e.value is not None and e.value == e.event
    assert text in str(e)


def test_both_ivr_flows_are_held_by_the_one_generic_holder():
    assert issubclass(inmate.InmateFlow, Flow)
    assert issubclass(called_party.CalledPartyFlow, Flow)
    assert "feed" not in vars(inmate.InmateFlow) and "feed" not in vars(called_party.CalledPartyFlow)


def test_the_holder_gives_the_first_actions_once_and_keeps_the_state():
    flow = inmate.InmateFlow(inmate.IvrSettings(), inmate_id="i-1")
    first = flow.start()
    assert first == [moves.Play(("number_enter",), "en", True)]
    assert flow.start() == []
    assert flow.feed(moves.Hangup()) == [] and flow.done
