"""Every way a kiosk call can end before dialling maps to one named reason (switch.wire.protocol.
SETUP_FAILURES), which the worker reports in SetupFailed: pure, one row per way."""
import pytest

from switch.wire import protocol as wire
from switch.worker.call import setup_failure_for


@pytest.mark.parametrize("end_reason, disposition, reason", [
    (None, "abandoned", "abandoned"),              # the kiosk hung up in the menu
    ("pin_invalid", "denied", "pin_refused"),
    ("pin_locked", "denied", "pin_refused"),
    ("no_input", "abandoned", "no_input"),
    ("system_unavailable", "failed", "core_unreachable"),
    ("not_approved", "denied", "denied"),
    ("outside_calling_hours", "denied", "denied"),
    ("insufficient_funds", "denied", "denied"),
    (None, "failed", "failed"),
    ("something_new", "failed", "failed"),
])
def test_each_way_a_call_ends_before_dialling_has_its_reason(end_reason, disposition, reason):
    got, detail = setup_failure_for(end_reason, disposition)
    assert got == reason and got in wire.SETUP_FAILURES
    assert detail                                  # always something for people to read
