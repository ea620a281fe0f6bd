"""The charging steps' transfer ids are uuid5(CALL_NAMESPACE, "call:period:purpose"), built
without uuid.uuid5 for speed: the same ids, for any call, period and purpose."""
from __future__ import annotations

import uuid

from hypothesis import given, strategies as st

from switch.rules import session as s


@given(st.uuids(), st.integers(-10, 10**6), st.text())
def test_a_transfer_id_is_the_uuid5_of_its_name(call_id, period, purpose):
    tid = s.transfer_id(call_id, period, purpose)
    expected = uuid.uuid5(s.CALL_NAMESPACE, f"{call_id}:{period}:{purpose}")
    assert tid == expected
    assert (tid.version, tid.variant, str(tid), hash(tid)) == \
        (expected.version, expected.variant, str(expected), hash(expected))
    assert tid.is_safe is expected.is_safe
