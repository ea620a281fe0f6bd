"""The ledger: double-entry money in PostgreSQL, with holds, idempotent batches and `verify`.

Money is integer micro-units (1e-6 of the currency). An account has four counters (debits and
credits, pending and posted); a transfer is an immutable row that moves an amount from a debit
account to a credit account. A hold reserves money (pending) until it is posted (all or part; the
rest is released), voided, or expired by the sweeper. A batch is one call and one transaction;
see `submit`. Result codes are in `ledger.results`, in precedence order.

Money invariants. `verify` checks each by number, and tests cite them:

1. Double entry: in every currency, the sum of posted debits equals the sum of posted credits,
   and the sum of pending debits equals the sum of pending credits.
2. No overdraft: an account with the no-overdraft rule never has debits (pending + posted) above
   its posted credits, and no counter is negative. A CHECK constraint on the balance row refuses
   any write that would break it, whatever code issues the UPDATE.
3. Every counter equals the sum of its transfers: posted counters sum singles and posts, pending
   counters sum the holds not yet resolved (per account and shard).
4. A hold resolves at most once (a unique index on the resolving transfer's hold id), by a post,
   void or expire on the hold's own accounts and shards, after the hold; a post takes no more than
   was held, a void or expire releases exactly the hold, an expire comes no earlier than the expiry.
5. Transfers are immutable: a trigger refuses UPDATE, DELETE and TRUNCATE.
6. Every transfer moves a positive amount between two different existing accounts of one currency.
7. The open holds (the sweeper's list) are exactly the holds not yet resolved.

Idempotency: the transfer id is the client's key. The same id with the same content answers
``exists`` (success, no second effect); with other content, the first difference
(``exists_with_different_*``). A rejected id keeps its first result forever.

Hot accounts (revenue, tax, call clearing) are spread over several balance rows ("shards"); a
connection credits its own shard, so concurrent batches do not queue on one row.
"""

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from ledger.errors import (
    AccountNotFound,
    BatchTooLarge,
    ConcurrentSubmission,
    InvalidAccount,
    InvalidTransfer,
    LedgerError,
)
from ledger.results import AccountResult, TransferResult
from ledger.transfers import (
    AMOUNT_MAX,
    BATCH_SIZE_MAX,
    HOLD_EXPIRY_SECONDS_MAX,
    Result,
    Transfer,
    TransferCode,
    TransferKind,
    batch_args,
    expiry_id,
)

# The parts that talk to the database load on first use: importing the ledger for its data (a
# Transfer, a result code, an error) loads no database driver, so pure modules may build transfers.
_ON_FIRST_USE = {
    "DEFAULT_SHARDS": "ledger.accounts",
    "Account": "ledger.accounts",
    "AccountKind": "ledger.accounts",
    "create_accounts": "ledger.accounts",
    "lock": "ledger.locks",
    "Balance": "ledger.balances",
    "balance": "ledger.balances",
    "balances": "ledger.balances",
    "Statement": "ledger.statements",
    "StatementLine": "ledger.statements",
    "statement": "ledger.statements",
    "submit": "ledger.submission",
    "sweep_expired": "ledger.sweeper",
    "INVARIANTS": "ledger.verify",
    "VerifyReport": "ledger.verify",
    "Violation": "ledger.verify",
    "verify": "ledger.verify",
}

if TYPE_CHECKING:
    from ledger.accounts import DEFAULT_SHARDS, Account, AccountKind, create_accounts
    from ledger.balances import Balance, balance, balances
    from ledger.locks import lock
    from ledger.statements import Statement, StatementLine, statement
    from ledger.submission import submit
    from ledger.sweeper import sweep_expired
    from ledger.verify import INVARIANTS, VerifyReport, Violation, verify


def __getattr__(name: str) -> Any:
    module = _ON_FIRST_USE.get(name)
    if module is None:
        raise AttributeError(f"module 'ledger' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


class _Ledger(types.ModuleType):
    """The package keeps its exported names: loading a submodule binds it on its package, and
    two share a name with the function they export (``verify``, ``balances``); the function keeps
    the name, as when this package imported everything at once."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in _ON_FIRST_USE and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Ledger


__all__ = [
    "AMOUNT_MAX",
    "Account",
    "AccountKind",
    "AccountNotFound",
    "AccountResult",
    "BATCH_SIZE_MAX",
    "Balance",
    "BatchTooLarge",
    "ConcurrentSubmission",
    "DEFAULT_SHARDS",
    "HOLD_EXPIRY_SECONDS_MAX",
    "INVARIANTS",
    "InvalidAccount",
    "InvalidTransfer",
    "LedgerError",
    "Result",
    "Statement",
    "StatementLine",
    "Transfer",
    "TransferCode",
    "TransferKind",
    "TransferResult",
    "VerifyReport",
    "Violation",
    "balance",
    "balances",
    "batch_args",
    "create_accounts",
    "expiry_id",
    "lock",
    "statement",
    "submit",
    "sweep_expired",
    "verify",
]
