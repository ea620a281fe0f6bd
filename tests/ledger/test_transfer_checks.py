"""A Transfer is checked whenever it is made, however cheaply the common case is checked: the
values that mean the same thing are normalized (what is not a transfer is refused by field, in
tests/ledger/test_results.py); `relinked` changes the chain flag and nothing else."""
from __future__ import annotations

import dataclasses
import uuid

import pytest

from ledger import InvalidTransfer, Transfer, TransferCode, TransferKind as K


class Text(str):
    """A str subclass: still an account id."""


def test_equivalent_values_are_normalized_and_subclasses_accepted():
    t = Transfer(uuid.uuid4(), 2, Text("a"), "b", 5, expires_in=60, code="tax", ref=Text("r"))
    assert t.kind is K.HOLD and type(t.kind) is K
    assert t.code is TransferCode.TAX and type(t.code) is TransferCode
    assert t.debit == "a" and t.ref == "r"


def test_relinked_changes_the_flag_only():
    t = Transfer(uuid.uuid4(), K.HOLD, "a", "b", 5, expires_in=60, code=TransferCode.TAX,
                 ref="r", linked=True)
    closed = t.relinked(False)
    assert closed.linked is False and t.linked is True
    assert closed == dataclasses.replace(t, linked=False)
    assert hash(closed) == hash(dataclasses.replace(t, linked=False))
    assert t.relinked(True) is t
    with pytest.raises(InvalidTransfer) as e:
        t.relinked(1)
    assert e.value.field == "linked"
    with pytest.raises(dataclasses.FrozenInstanceError):
        closed.linked = True
