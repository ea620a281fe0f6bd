"""An in-memory ledger written straight from the rules: the oracle the database is tested against.

Written independently of the SQL: plain dicts, and a linked chain undone by restoring a copy of
the state taken when the chain began. Shards do not exist here (an account is one set of counters).
"""
from __future__ import annotations

import copy
import datetime as dt
import uuid
from dataclasses import dataclass, field

from ledger.accounts import Account
from ledger.results import AccountResult, TransferResult as R
from ledger.transfers import AMOUNT_MAX, HOLD_EXPIRY_SECONDS_MAX, Transfer, TransferKind as K, expiry_id

BIGINT_MAX = 2**63 - 1
NIL = uuid.UUID(int=0)


@dataclass
class MAccount:
    id: str
    kind: str
    currency: str
    no_overdraft: bool
    shards: int
    dp: int = 0
    dpo: int = 0
    cp: int = 0
    cpo: int = 0

    def counters(self) -> tuple[int, int, int, int]:
        return self.dp, self.dpo, self.cp, self.cpo


@dataclass
class MTransfer:
    id: uuid.UUID
    kind: K
    debit: str
    credit: str
    amount: int            # as stored: posted amount for a post, released amount for void/expire
    hold: uuid.UUID | None
    expires_in: int | None
    linked: bool
    code: str
    ref: str
    expires_at: dt.datetime | None = None


@dataclass
class State:
    accounts: dict[str, MAccount] = field(default_factory=dict)
    transfers: dict[uuid.UUID, MTransfer] = field(default_factory=dict)
    resolved: dict[uuid.UUID, K] = field(default_factory=dict)   # hold id -> how it ended


class Model:
    def __init__(self, expiry_max: int = HOLD_EXPIRY_SECONDS_MAX):
        self.state = State()
        self.rejections: dict[uuid.UUID, R] = {}   # never rolled back
        self.expiry_max = expiry_max

    # -- accounts ---------------------------------------------------------------------------------
    def create_account(self, a: Account, default_shards: int = 16) -> AccountResult:
        no_overdraft, shards = a.resolved(default_shards)
        old = self.state.accounts.get(a.id)
        if old is None:
            self.state.accounts[a.id] = MAccount(a.id, a.kind.value, a.currency, no_overdraft, shards)
            return AccountResult.OK
        if old.kind != a.kind.value:
            return AccountResult.EXISTS_WITH_DIFFERENT_KIND
        if old.currency != a.currency:
            return AccountResult.EXISTS_WITH_DIFFERENT_CURRENCY
        if old.no_overdraft != no_overdraft:
            return AccountResult.EXISTS_WITH_DIFFERENT_OVERDRAFT
        if old.shards != shards:
            return AccountResult.EXISTS_WITH_DIFFERENT_SHARDS
        return AccountResult.EXISTS

    def counters(self, account_id: str) -> tuple[int, int, int, int]:
        return self.state.accounts[account_id].counters()

    def open_holds(self) -> list[MTransfer]:
        return [t for t in self.state.transfers.values()
                if t.kind == K.HOLD and t.id not in self.state.resolved]

    # -- transfers --------------------------------------------------------------------------------
    def submit(self, transfers: list[Transfer], now: dt.datetime) -> list[R]:
        results: list[R] = []
        i, n = 0, len(transfers)
        while i < n:
            end = i
            while end < n - 1 and transfers[end].linked:
                end += 1
            chain = transfers[i:end + 1]
            chained = len(chain) > 1 or chain[-1].linked
            saved = copy.deepcopy(self.state) if chained else None
            codes: list[R] = []
            for pos, t in enumerate(chain):
                if i + pos == n - 1 and t.linked:
                    code = R.LINKED_EVENT_CHAIN_OPEN
                else:
                    code = self._one(t, now)
                codes.append(code)
                if not code.succeeded:
                    break
            if chained and not codes[-1].succeeded:
                self.state = saved
                codes = [R.LINKED_EVENT_FAILED] * (len(codes) - 1) + [codes[-1]]
                codes += [R.LINKED_EVENT_FAILED] * (len(chain) - len(codes))
            results.extend(codes)
            i = end + 1
        return results

    def sweep(self, now: dt.datetime, limit: int = 1000) -> int:
        due = sorted((h for h in self.open_holds() if h.expires_at <= now),
                     key=lambda h: (h.expires_at, h.id.int))[:limit]
        ts = [Transfer(expiry_id(h.id), K.EXPIRE, hold=h.id) for h in due]
        return sum(1 for r in self.submit(ts, now) if r == R.OK)

    def _one(self, t: Transfer, now: dt.datetime) -> R:
        code = self._decide(t, now)
        if code.persisted and t.id not in self.rejections and t.id not in self.state.transfers:
            self.rejections[t.id] = code
        return code

    def _decide(self, t: Transfer, now: dt.datetime) -> R:
        st = self.state
        amount = t.amount
        if t.id == NIL:
            return R.ID_MUST_NOT_BE_ZERO
        if t.kind in (K.SINGLE, K.HOLD):
            if t.hold is not None:
                return R.HOLD_ID_MUST_BE_NULL
            if t.debit is None:
                return R.DEBIT_ACCOUNT_REQUIRED
            if t.credit is None:
                return R.CREDIT_ACCOUNT_REQUIRED
            if t.debit == t.credit:
                return R.ACCOUNTS_MUST_BE_DIFFERENT
            if amount is None or amount <= 0:
                return R.AMOUNT_MUST_BE_POSITIVE
            if amount > AMOUNT_MAX:
                return R.AMOUNT_OUT_OF_RANGE
            if t.kind == K.SINGLE and t.expires_in is not None:
                return R.EXPIRY_RESERVED_FOR_HOLD
            if t.kind == K.HOLD and (t.expires_in is None or not 0 < t.expires_in <= self.expiry_max):
                return R.EXPIRY_OUT_OF_RANGE
        else:
            if t.hold is None or t.hold == NIL:
                return R.HOLD_ID_REQUIRED
            if t.hold == t.id:
                return R.HOLD_ID_MUST_BE_DIFFERENT
            if t.debit is not None and t.debit == t.credit:
                return R.ACCOUNTS_MUST_BE_DIFFERENT
            if amount is not None and amount < 0:
                return R.AMOUNT_MUST_BE_POSITIVE
            if amount is not None and amount > AMOUNT_MAX:
                return R.AMOUNT_OUT_OF_RANGE
            if t.expires_in is not None:
                return R.EXPIRY_RESERVED_FOR_HOLD

        old = st.transfers.get(t.id)
        if old is not None:
            return self._compare(t, old)
        if t.id in self.rejections:
            return self.rejections[t.id]

        code = None if t.code is None else t.code.value
        if t.kind in (K.SINGLE, K.HOLD):
            d, c = st.accounts.get(t.debit), st.accounts.get(t.credit)
            if d is None:
                return R.DEBIT_ACCOUNT_NOT_FOUND
            if c is None:
                return R.CREDIT_ACCOUNT_NOT_FOUND
            if d.currency != c.currency:
                return R.CURRENCY_MISMATCH
            if d.dp + d.dpo + amount > BIGINT_MAX:
                return R.OVERFLOWS_DEBITS
            if c.cp + c.cpo + amount > BIGINT_MAX:
                return R.OVERFLOWS_CREDITS
            if d.no_overdraft and d.dp + d.dpo + amount > d.cpo:
                return R.INSUFFICIENT_FUNDS
            if t.kind == K.SINGLE:
                d.dpo += amount
                c.cpo += amount
                expires_at = None
            else:
                d.dp += amount
                c.cp += amount
                expires_at = now + dt.timedelta(seconds=t.expires_in)
            st.transfers[t.id] = MTransfer(t.id, t.kind, t.debit, t.credit, amount, None,
                                           t.expires_in, t.linked, code or "other", t.ref or "",
                                           expires_at)
            return R.OK

        hold = st.transfers.get(t.hold)
        if hold is None:
            return R.HOLD_NOT_FOUND
        if hold.kind != K.HOLD:
            return R.NOT_A_HOLD
        if t.debit is not None and t.debit != hold.debit:
            return R.HOLD_HAS_DIFFERENT_DEBIT_ACCOUNT
        if t.credit is not None and t.credit != hold.credit:
            return R.HOLD_HAS_DIFFERENT_CREDIT_ACCOUNT
        if t.kind == K.POST and amount is not None and amount > hold.amount:
            return R.EXCEEDS_HOLD_AMOUNT
        if t.kind != K.POST and amount and amount != hold.amount:
            return R.HOLD_HAS_DIFFERENT_AMOUNT
        ended = st.resolved.get(hold.id)
        if ended == K.POST:
            return R.HOLD_ALREADY_POSTED
        if ended == K.VOID:
            return R.HOLD_ALREADY_VOIDED
        if ended == K.EXPIRE:
            return R.HOLD_EXPIRED
        if t.kind != K.EXPIRE and now >= hold.expires_at:
            return R.HOLD_EXPIRED
        if t.kind == K.EXPIRE and now < hold.expires_at:
            return R.HOLD_NOT_EXPIRED
        d, c = st.accounts[hold.debit], st.accounts[hold.credit]
        d.dp -= hold.amount
        c.cp -= hold.amount
        stored = hold.amount
        if t.kind == K.POST:
            stored = amount or hold.amount
            d.dpo += stored
            c.cpo += stored
        st.resolved[hold.id] = t.kind
        st.transfers[t.id] = MTransfer(t.id, t.kind, hold.debit, hold.credit, stored, hold.id, None,
                                       t.linked, code or hold.code,
                                       hold.ref if t.ref is None else t.ref)
        return R.OK

    @staticmethod
    def _compare(t: Transfer, old: MTransfer) -> R:
        if old.kind != t.kind:
            return R.EXISTS_WITH_DIFFERENT_KIND
        if old.linked != t.linked:
            return R.EXISTS_WITH_DIFFERENT_FLAGS
        if old.hold != t.hold:
            return R.EXISTS_WITH_DIFFERENT_HOLD
        if old.expires_in != t.expires_in:
            return R.EXISTS_WITH_DIFFERENT_EXPIRY
        if t.debit is not None and t.debit != old.debit:
            return R.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT
        if t.credit is not None and t.credit != old.credit:
            return R.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT
        if t.amount and t.amount != old.amount:
            return R.EXISTS_WITH_DIFFERENT_AMOUNT
        if t.code is not None and t.code.value != old.code:
            return R.EXISTS_WITH_DIFFERENT_CODE
        if t.ref is not None and t.ref != old.ref:
            return R.EXISTS_WITH_DIFFERENT_REF
        return R.EXISTS
