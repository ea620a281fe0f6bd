"""Group commit: the fast-path Accepts and Continues of many calls carried out by one statement
and one ledger batch; their Ends likewise, by a second GroupCommit (`statement=ENDS`).

Each step is decided alone (switch.rules.session.accept or advance, from the call's row); what is
shared is only the carrying out: steps go to PostgreSQL together through `call_advance_batch`,
which treats each call exactly as `call_advance` does (its own linked chain, its row written only
when the chain applied). A call whose step did not apply, or a batch that failed, answers None
and the core's careful path decides under the row lock. So under load a step costs a share of
one round trip and one commit instead of its own.

Calls are split into `inflight_max` lanes by their funding account, and each lane runs at most one
batch at a time, on its own shards of revenue and tax (`ledger.shard`, ledger migration 0005;
lane k of n uses shards k, k + n, k + 2n, ..., one after the other): the holds a batch posts
are the ones its lane made, so two batches in flight lock disjoint balance rows and run side by
side instead of queueing on each other's shards (before lanes, every batch posted holds made on
many connections and locked most shards until it committed). A lane rotates over several shards
rather than keeping one so that the careful steps of its calls (an End posts the call's hold on
the hold's shard, holding that row until it commits) do not all queue on one row.
Steps that arrive meanwhile wait for their lane's next batch, which leaves as soon as the
running one finishes: the busier the core, the bigger the batch (up to `size_max`). An idle core
sends a step after `window_seconds`, in case others come with it.

Ends go by `call_end_batch`, in batches of their own (an End step also ends the row and writes
the call's CDR, from the `Ending` the core priced), through the same queue with
`statement=ENDS`; the core gives that queue one lane (a call ends once).
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

import asyncpg

import ledger
from switch.rules import session

__all__ = ["GroupCommit", "Ending", "ADVANCES", "ENDS", "WINDOW_SECONDS", "SIZE_MAX",
           "INFLIGHT_MAX"]

log = logging.getLogger("ics.core")

WINDOW_SECONDS = 0.003      # config: core.group_commit_window_seconds
SIZE_MAX = 256              # calls in one batch; a full batch goes as soon as it may
INFLIGHT_MAX = 4            # lanes, so batches running at once (config: core.group_commit_lanes)

_SQL = ("SELECT call_advance_batch($1::uuid[], $2::text[], $3::integer[], $4::integer[], "
        "$5::integer[], $6::integer[], $7::integer[], $8::integer[], $9::uuid[], $10::smallint[], "
        "$11::text[], $12::text[], $13::bigint[], $14::uuid[], $15::integer[], $16::boolean[], "
        "$17::text[], $18::text[], $19::timestamptz, $20::integer, $21::text[], $22::integer[], "
        "$23::integer[], $24::integer[], $25::boolean[], $26::uuid[], $27::uuid[], $28::bigint[], "
        "$29::timestamptz, $30::timestamptz[]) "
        # The lane's shard, for this transaction only; a volatile subquery runs first.
        "FROM (SELECT set_config('ledger.shard', $31::text, true)) lane")


@dataclass(frozen=True)
class Ending:
    """What an End writes beside its step: the call row's end and the CDR's priced fields (the
    rest of the CDR is copied from the call row as ended)."""
    disposition: str
    billed_seconds: int
    charges_json: str
    tariff_version: str | None
    recording: str | None         # kept only when the call is recorded
    trunk: str | None
    sip_code: int | None


@dataclass
class _Entry:
    call: object                  # the row the step was decided from
    step: session.Step
    now: datetime
    done: asyncio.Future
    accepted: datetime | None = None      # a first Accept: the instant it records
    ending: Ending | None = None          # an End: its CDR


@dataclass(eq=False)
class _Lane:
    first: int                    # its first ledger shard; its batches rotate from there
    step: int = 1                 # ... by this many (the number of lanes)
    spread: int = 1               # ... over this many shards
    batches: int = 0              # batches it has sent
    pending: dict = field(default_factory=dict)     # call id -> _Entry
    timer: object = None
    running: asyncio.Task | None = None

    def shard(self) -> int:
        """The shard of the lane's next batch."""
        self.batches += 1
        return self.first + self.step * ((self.batches - 1) % self.spread)


class GroupCommit:
    """Collects fast-path steps and carries them out in batches. `call_later(delay, fn)` is the
    event loop's (injected for tests); `observe(what, outcome, **kw)` is the core's metrics hook."""

    def __init__(self, pool: asyncpg.Pool, *, window_seconds: float = WINDOW_SECONDS,
                 size_max: int = SIZE_MAX, inflight_max: int = INFLIGHT_MAX,
                 call_later: Callable | None = None, observe: Callable | None = None,
                 statement: _Statement | None = None) -> None:
        if window_seconds < 0 or size_max < 1 or inflight_max < 1:
            raise ValueError(f"group commit needs window_seconds >= 0, size_max >= 1 and "
                             f"inflight_max >= 1, got {window_seconds}, {size_max}, "
                             f"{inflight_max}")
        self.pool = pool
        self.statement = statement or ADVANCES
        self.window_seconds = window_seconds
        self.size_max = size_max
        self.inflight_max = inflight_max
        self._call_later = call_later
        self._observe = observe or (lambda *a, **k: None)
        spread = max(1, ledger.DEFAULT_SHARDS // inflight_max)   # config: ledger.revenue_shards
        self._lanes = [_Lane(k, inflight_max, spread) for k in range(inflight_max)]

    @property
    def _pending(self) -> dict:
        """Every step waiting for a batch, of all lanes."""
        return {cid: e for lane in self._lanes for cid, e in lane.pending.items()}

    def _lane(self, call) -> "_Lane":
        """The lane of a call: by its funding account, so calls sharing an account never lock
        its row from two batches (a free call has none: by its id)."""
        key = call["funding_account"] or str(call["id"])
        return self._lanes[zlib.crc32(key.encode()) % len(self._lanes)]

    async def advance(self, call, step: session.Step, now: datetime, *,
                      accepted: datetime | None = None) -> bool | None:
        """Carry out one call's step with others; True when it applied, None when the careful
        path must decide (the call moved on, the ledger refused the chain, the batch failed).
        `accepted`: the step is the call's first Accept, accepted at that instant."""
        return await self._enqueue(call, step, now, accepted=accepted)

    async def end(self, call, step: session.Step, now: datetime, ending: Ending) -> bool | None:
        """Carry out one talking call's End step with others (a GroupCommit of `ENDS`): True
        when the call ended and its CDR was written, None when the careful path must decide."""
        return await self._enqueue(call, step, now, ending=ending)

    async def _enqueue(self, call, step, now, **facts) -> bool | None:
        lane = self._lane(call)
        if call["id"] in lane.pending:
            return None           # a resend racing its original: the row lock sorts it out
        loop = asyncio.get_running_loop()
        entry = _Entry(call, step, now, loop.create_future(), **facts)
        lane.pending[call["id"]] = entry
        if len(lane.pending) >= self.size_max:
            self._flush(lane)
        elif lane.timer is None and lane.running is None:
            later = self._call_later or loop.call_later
            lane.timer = later(self.window_seconds, self._on_window, lane)
        return await entry.done

    def _on_window(self, lane: "_Lane") -> None:
        lane.timer = None
        self._flush(lane)

    def _flush(self, lane: "_Lane") -> None:
        if lane.running is not None:
            return                # the lane's next batch leaves when its running one is done
        if lane.timer is not None:
            lane.timer.cancel()
            lane.timer = None
        batch = list(lane.pending.values())[:self.size_max]
        for entry in batch:
            del lane.pending[entry.call["id"]]
        if batch:
            # A fresh context: the batch is many calls', not the log fields of the request
            # that happened to fill it.
            task = asyncio.get_running_loop().create_task(self._run(batch, lane.shard()),
                                                          context=contextvars.Context())
            lane.running = task
            task.add_done_callback(lambda t: self._finished(lane))

    def _finished(self, lane: "_Lane") -> None:
        lane.running = None
        if lane.pending:
            self._flush(lane)     # what queued behind the batch goes now, as one batch

    async def _run(self, batch: list[_Entry], shard: int = 0) -> None:
        """Carry out one batch. Whatever happens (the batch applied, PostgreSQL refused it, the
        connection died, the task was cancelled, a bug raised here), every waiter is answered:
        True for a call whose step applied, None for every other (the careful path decides again
        under the row lock, from the row as it then is, so answering None for a step that did
        apply is safe, and answering True for one that did not is impossible)."""
        started = time.perf_counter()
        out = None
        try:
            async with self.pool.acquire() as conn:
                out = await conn.fetchval(self.statement.sql, *self.statement.args(batch),
                                          str(shard))
            self._observe("group_commit", "batch", size=len(batch),
                          seconds=time.perf_counter() - started)
        except Exception as e:      # noqa: BLE001 - no failure of a batch may strand a waiter
            # Nothing of the batch applied (one statement, one transaction) or, if the failure
            # came after it, each call's careful path finds its row moved on.
            self._observe("charging", "group_commit_failed")
            log.warning("group commit failed calls=%d error=%r", len(batch), e)
        finally:
            self._observe("ledger", "submit", seconds=time.perf_counter() - started)
            codes = list(out) if out is not None and len(out) == len(batch) else []
            for k, entry in enumerate(batch):
                if not entry.done.done():
                    applied = k < len(codes) and codes[k] == 0
                    entry.done.set_result(True if applied else None)


def _steps(batch: list[_Entry], now: datetime) -> tuple:
    """What both statements begin with: each call's row as read, its chain's place among the
    batch's transfers, the transfers, and the row the step writes."""
    transfers: list[ledger.Transfer] = []
    t_call, t_first, t_count = [], [], []
    for k, e in enumerate(batch, 1):
        t_first.append(len(transfers) + 1)
        t_count.append(len(e.step.transfers))
        transfers.extend(e.step.transfers)
        t_call.extend([k] * len(e.step.transfers))
    rows = [e.step.row for e in batch]
    return (
        [e.call["id"] for e in batch], [e.call["state"] for e in batch],
        [e.call["period"] for e in batch], [e.call["posted_until"] for e in batch],
        [e.call["grant_until"] for e in batch], t_call, t_first, t_count,
        *ledger.batch_args(transfers, now=now),
        [r.state.value for r in rows], [r.period for r in rows], [r.grant_until for r in rows],
        [r.posted_until for r in rows], [r.last_grant for r in rows],
        [r.hold_call for r in rows], [r.hold_tax for r in rows],
        [r.shortfall_micros for r in rows])


def _args(batch: list[_Entry]) -> tuple:
    now = max(e.now for e in batch)
    return (*_steps(batch, now), now, [e.accepted for e in batch])


def _end_args(batch: list[_Entry]) -> tuple:
    """call_end_batch's arguments: as a Continue's, then each call's end and CDR."""
    ended = [e.ending for e in batch]
    charged = [e.step.answer.charge for e in batch]      # the step's session.Settlement
    return (
        *_steps(batch, max(e.now for e in batch)),
        [e.now for e in batch], [x.disposition for x in ended],
        [x.billed_seconds for x in ended], [c.call_micros for c in charged],
        [c.tax_micros for c in charged], [x.charges_json for x in ended],
        [x.tariff_version for x in ended], [x.recording for x in ended],
        [x.trunk for x in ended], [x.sip_code for x in ended])


_END_SQL = ("SELECT call_end_batch($1::uuid[], $2::text[], $3::integer[], $4::integer[], "
            "$5::integer[], $6::integer[], $7::integer[], $8::integer[], $9::uuid[], "
            "$10::smallint[], $11::text[], $12::text[], $13::bigint[], $14::uuid[], "
            "$15::integer[], $16::boolean[], $17::text[], $18::text[], $19::timestamptz, "
            "$20::integer, $21::text[], $22::integer[], $23::integer[], $24::integer[], "
            "$25::boolean[], $26::uuid[], $27::uuid[], $28::bigint[], $29::timestamptz[], "
            "$30::text[], $31::integer[], $32::bigint[], $33::bigint[], $34::text[], "
            "$35::text[], $36::text[], $37::text[], $38::integer[]) "
            "FROM (SELECT set_config('ledger.shard', $39::text, true)) lane")


@dataclass(frozen=True)
class _Statement:
    """What one kind of batch runs: its SQL and the builder of its arguments."""
    sql: str
    args: Callable[[list[_Entry]], tuple]


ADVANCES = _Statement(_SQL, _args)          # Accepts and Continues: call_advance_batch
ENDS = _Statement(_END_SQL, _end_args)      # Ends of talking calls: call_end_batch
