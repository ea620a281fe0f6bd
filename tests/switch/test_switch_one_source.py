"""One source each: the deny reasons are one enum (ivr.denials.DenyReason) that the policy, the
wire, the prompts and the metrics derive from; the wire's errors are declared once
(switch.wire.protocol) and are the very classes the core raises."""

from __future__ import annotations

import pytest
from twisted.python.failure import Failure

from ivr import catalog
from ivr.denials import DenyReason
from ivr.flows.moves import Authorized
from ops import metrics
from switch.control import core
from switch.rules import policy
from switch.wire import protocol as wire


@pytest.mark.parametrize("reason", list(DenyReason), ids=[r.value for r in DenyReason])
def test_every_deny_reason_has_a_prompt_a_metric_label_and_a_place_on_the_wire(reason):
    for lang in catalog.LANGUAGES:
        assert catalog.path(f"deny_{reason}", lang).is_file(), (reason, lang)
    assert reason in metrics.AUTH_OUTCOMES
    assert reason in wire.DENY_REASONS and reason in catalog.DENY_REASONS
    assert Authorized(False, reason=reason.value).reason == reason    # the flow accepts it


def test_the_lists_of_deny_reasons_are_the_enum_and_nothing_else():
    assert wire.DENY_REASONS == catalog.DENY_REASONS == tuple(r.value for r in DenyReason)


def test_the_policy_denies_with_the_enum_in_its_own_precedence_order():
    values = [d.value for d in policy.Deny]
    assert all(isinstance(v, DenyReason) for v in values)
    assert values == sorted(values, key=list(DenyReason).index)


@pytest.mark.parametrize("name", ["UnknownCall", "CallAlreadyEnded", "InsufficientFunds",
                                  "KioskUnknown", "BadRequest", "CoreUnavailable"])
def test_the_core_raises_the_wires_own_error_classes(name):
    assert getattr(core, name) is getattr(wire, name)


def test_every_wire_error_has_its_own_code_and_every_command_answers_it_by_that_code():
    declared = wire.WireError.__subclasses__()
    assert len({e.code for e in declared}) == len(declared)
    commands = [c for c in vars(wire).values()
                if isinstance(c, type) and c.__module__ == wire.__name__ and hasattr(c, "errors")
                and c is not wire.WireError]
    assert commands
    for command in commands:
        for error, code in command.errors.items():
            assert code == error.code, (command.__name__, error.__name__)


def test_a_refusal_of_the_core_reaches_the_worker_under_the_declared_code():
    mismatch = core.KioskSourceMismatch("k-1", "198.51.100.7")
    assert (mismatch.what, mismatch.where, mismatch.value) == \
        ("kiosk_unknown", "k-1", "198.51.100.7")
    assert str(mismatch) == ("kiosk_source_mismatch: kiosk 'k-1' does not call from "
                             "198.51.100.7")
    # What AMP does with a responder's failure: trap it against the command's errors.
    trapped = Failure(mismatch).trap(*wire.AdmitKiosk.allErrors)
    assert wire.AdmitKiosk.allErrors[trapped] == b"KIOSK_UNKNOWN"
    # ... and what the worker rebuilds from the code and the message.
    received = wire.AdmitKiosk.reverseErrors[b"KIOSK_UNKNOWN"](str(mismatch))
    assert isinstance(received, wire.KioskUnknown) and str(received) == str(mismatch)


def test_a_ledger_anomaly_is_answered_as_core_unavailable():
    anomaly = core.LedgerAnomaly("c-1", {"hold": "insufficient_funds"})
    assert isinstance(anomaly, wire.CoreUnavailable)
    trapped = Failure(anomaly).trap(*wire.Continue.allErrors)
    assert wire.Continue.allErrors[trapped] == b"CORE_UNAVAILABLE"
    assert anomaly.where == "c-1"
