"""Call-shaped traffic for ledger tests: accounts, funding, and batches with deterministic ids."""
from __future__ import annotations

import uuid

from ledger import Account, AccountKind, Transfer, TransferCode, TransferKind as K

NAMESPACE = uuid.UUID("6f3c7a52-4a0e-4d4e-9b1c-3c1de0c0a11e")


def tid(*parts) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, "/".join(map(str, parts)))


def accounts(families: int) -> list[Account]:
    return [Account("fund", AccountKind.FUNDING_CLEARING), Account("clr", AccountKind.CALL_CLEARING),
            Account("rev", AccountKind.REVENUE), Account("tax", AccountKind.TAX_PAYABLE),
            *[Account(f"fam{i}", AccountKind.PREPAID_PHONE) for i in range(families)]]


def funding(run: str, families: int, amount: int) -> list[Transfer]:
    return [Transfer(tid(run, "fund", i), K.SINGLE, "fund", f"fam{i}", amount,
                     code=TransferCode.DEPOSIT) for i in range(families)]


def call_batch(run: str, batch: int, calls: int, families: int) -> list[Transfer]:
    """Per call: hold a minute, post most of it, pay revenue and tax out of clearing."""
    out = []
    for j in range(calls):
        hold = tid(run, batch, j, "hold")
        fam = f"fam{(batch * calls + j) % families}"
        out += [Transfer(hold, K.HOLD, fam, "clr", 1_000, expires_in=600, code=TransferCode.CALL_CHARGE),
                Transfer(tid(run, batch, j, "post"), K.POST, hold=hold, amount=800, linked=True),
                Transfer(tid(run, batch, j, "rev"), K.SINGLE, "clr", "rev", 740, linked=True,
                         code=TransferCode.CALL_REVENUE),
                Transfer(tid(run, batch, j, "tax"), K.SINGLE, "clr", "tax", 60, code=TransferCode.TAX)]
    return out
