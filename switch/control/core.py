"""The call-control core: decides every call and settles its money (I/O around the pure parts).

Each operation reads what it needs, decides with a pure function (`switch.rules.policy.decide`, the
charging steps of `switch.rules.session`: accept, advance, settle, lose), then writes the call row and
carries out the step's ledger transfers as ONE linked chain in ONE database transaction. Transfer
ids are derived from (call id, period, purpose, stretch, try), and the call row records how far the
call has got and which hold is open, so a repeated request, a retry after a lost answer or a
restarted core never moves money twice.

Money of a call (switch.rules.session has the rules): the talk the worker measured is charged out of the
one open hold (call part to revenue, tax part to tax payable) and the rest of the grant held again,
so a call costs the price of its measured talk under the tariff version pinned when it was
authorized. Every ledger answer has an outcome; a refusal never escapes as an exception.

Public API (stable for the worker link and the simulator): accept(call_id), continue_(call_id,
period, talk_seconds), end(call_id, talk_seconds, disposition, ...), close_lost(call_id),
close_silent_calls(). New: `LedgerAnomaly` (the ledger refused even the last, unrefusable try: a
broken ledger or schema; the worker link answers it as CoreUnavailable).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Awaitable, Callable

import asyncpg
from structlog.contextvars import bind_contextvars

import ledger
from ivr.denials import DenyReason
from switch.rules import policy
from switch.wire.protocol import (BadRequest, CallAlreadyEnded, CoreBusy, CoreUnavailable,
                                  InsufficientFunds, KioskUnknown, UnknownCall)
from switch.rules.numbers import InvalidNumber, to_e164
from switch.rules.kiosk_source import admits, parse_source_ip
from switch.rules.pin import (GUESS_OUTCOMES, RESET_OUTCOMES, Lockout, PinFormatError, Throttle,
                              split_keyed)
from switch.rules.pin_session import PinSessions
from switch.control.pin_verify import PinVerifier, VerifierBusy
from switch.control.setup_gate import SetupBusy, SetupGate
from switch.rules.schedule import Schedule, parse_window
from switch.rules import session
from switch.control import group_commit
from switch.control.group_commit import GroupCommit
from switch.rules.session import CALL_NAMESPACE, CallState, Charge, transfer_id
from switch.control.tariffs import Pricing
from switch.settings import CoreSettings

__all__ = ["Core", "PinAnswer", "AuthAnswer", "GrantAnswer", "EndAnswer",
           "UnknownCall", "CallAlreadyEnded", "InsufficientFunds", "KioskUnknown", "BadRequest",
           "LedgerAnomaly", "KioskSourceMismatch", "REVENUE", "TAX_PAYABLE", "CALL_SHORTFALL",
           "CALL_NAMESPACE", "transfer_id"]

log = logging.getLogger("ics.core")

TRANSACTION_TRIES_MAX = 3
ROWS_CACHED_MAX = 100_000       # call rows the fast path keeps (a node's open calls)
# PostgreSQL aborted the transaction, not the request: run it again.
_RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError,
              ledger.ConcurrentSubmission)

# The database (and with it every worker's heartbeat) cannot be reached.
UNREACHABLE = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError,
               asyncio.TimeoutError, asyncpg.exceptions.CannotConnectNowError)

REVENUE = "revenue"
# Deny reasons of the edge, decided before policy (ivr.denials.DenyReason).
KIOSK_SOURCE_MISMATCH = DenyReason.KIOSK_SOURCE_MISMATCH.value
PIN_INVALID = DenyReason.PIN_INVALID.value        # no PIN session for this kiosk and inmate
TAX_PAYABLE = "tax_payable"
CALL_SHORTFALL = "call_shortfall"


# The core's refusals are the wire's errors, declared once (switch.wire.protocol): the worker receives
# the class raised here.
class KioskSourceMismatch(KioskUnknown):
    """The request claims a kiosk whose registered sources do not include the address the worker
    saw: the caller is not that kiosk (to the worker it is an unknown kiosk)."""

    def __init__(self, kiosk_id: str, source_ip: str | None):
        super().__init__(f"kiosk_source_mismatch: kiosk {kiosk_id!r} does not call from "
                         f"{source_ip or 'an unknown address'}", where=kiosk_id, value=source_ip)
        self.kiosk_id, self.source_ip = kiosk_id, source_ip


class LedgerAnomaly(CoreUnavailable):
    """The ledger refused every try of a step, the last one included (which moves no new hold
    and books what it cannot collect): the ledger or its schema is broken, not the call. The
    core logs it; the worker hears CORE_UNAVAILABLE and fails safe."""

    def __init__(self, call_id: str, answers: dict[str, str]) -> None:
        super().__init__(f"ledger refused every try of a step of call {call_id}: {answers}",
                         where=call_id, value=answers)
        self.call_id, self.answers = call_id, answers


@dataclass(frozen=True)
class PinAnswer:
    ok: bool
    locked: bool
    attempts_left: int
    inmate_id: str | None = None
    language: str | None = None
    pin_session: str | None = None     # for the one Authorize that follows (switch.rules.pin_session)


@dataclass(frozen=True)
class AuthAnswer:
    allow: bool
    reason: str | None = None
    call_id: str | None = None
    e164: str | None = None
    trunks: tuple[str, ...] = ()
    rate_micros_per_minute: int | None = None
    max_seconds: int | None = None
    record: bool | None = None
    privileged: bool | None = None
    passive_accept: bool | None = None
    language: str | None = None
    inmate_name: str | None = None
    inmate_name_wav: str | None = None
    facility_name: str | None = None
    funding: str | None = None


@dataclass(frozen=True)
class GrantAnswer:
    grant_until: int
    last: bool
    warn_at: int | None


@dataclass(frozen=True)
class EndAnswer:
    billed_seconds: int
    charged_micros: int
    cdr_id: str


Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Core:
    """One node's call control. `clock` and `pricing` are injected so tests can run a call's
    15 minutes in milliseconds and price with a test tariff."""

    def __init__(self, pool: asyncpg.Pool, pricing: Pricing, settings: CoreSettings = CoreSettings(),
                 *, clock: Clock = _utc_now, observer=None) -> None:
        self.pool = pool
        self.pricing = pricing
        self.s = settings
        self.clock = clock
        self.observer = observer          # metrics hooks (ops.metrics), optional
        self.lockout = Lockout(settings.pin_failures_max, settings.pin_window_seconds)
        self.books = session.Books(REVENUE, TAX_PAYABLE, CALL_SHORTFALL)
        self.group = (GroupCommit(pool, window_seconds=settings.group_commit_window_seconds,
                                  size_max=settings.group_commit_size_max,
                                  inflight_max=settings.group_commit_lanes, observe=self._observe)
                      if settings.group_commit_window_seconds > 0 else None)
        # Ends of talking calls, batched apart from Continues (their statement writes the CDR).
        # One lane: a call ends once, so Ends are a small share of the steps, and every lane
        # holds a pooled connection while its batch runs.
        self.group_ends = (GroupCommit(pool, window_seconds=settings.group_commit_window_seconds,
                                       size_max=settings.group_commit_size_max, inflight_max=1,
                                       observe=self._observe, statement=group_commit.ENDS)
                           if settings.group_commit_window_seconds > 0 else None)
        # The rows of calls in the fast path, as this core last committed them: a step decided
        # from one is carried out only if the call is still exactly there (group commit checks),
        # so a stale row costs a careful step, never money. Saves a read per Continue.
        self._rows: dict[uuid.UUID, dict] = {}
        self.throttle = Throttle(settings.pin_kiosk_failures_max, settings.pin_source_failures_max,
                                 settings.pin_throttle_window_seconds)
        self.pin_sessions = PinSessions(ttl_seconds=settings.pin_session_seconds,
                                        sessions_max=settings.pin_sessions_max)
        self.setup_gate = SetupGate(concurrent_max=settings.setups_concurrent_max,
                                    wait_seconds_max=settings.setup_wait_seconds_max,
                                    observe=self._observe)
        self.pin_verifier = PinVerifier(concurrent_max=settings.pin_checks_concurrent_max,
                                        wait_seconds_max=settings.setup_wait_seconds_max,
                                        remembered_max=settings.pin_remembered_max,
                                        observe=self._observe)
        # Since when the core has heard its workers without a break (close_silent_calls): its
        # start, or the database's return after an outage (None while it is out).
        self._present_since: datetime | None = clock()

    @property
    def terms(self) -> session.Terms:
        # A property: tests replace `s` on a running core.
        return session.Terms(self.s.period_seconds, self.s.warning_seconds,
                             self.s.hold_slack_seconds)

    # -- kiosk admission and PIN ----------------------------------------------------------------
    async def admit_kiosk(self, kiosk_id: str, source_ip: str | None = None) -> bool:
        """Before a kiosk leg is answered: the kiosk is known and active, and calls from one of its
        registered sources (KioskUnknown / KioskSourceMismatch otherwise, the mismatch audited).
        CoreBusy when the core has no room for another call set-up (switch.control.setup_gate)."""
        async with self._setup("admit_kiosk"):
            return await self._admit_kiosk(kiosk_id, source_ip)

    def setup_failed(self, kiosk_id: str, reason: str, detail: str, source_ip: str | None,
                     worker_id: str | None) -> None:
        """A worker's report that a kiosk call ended before any trunk was dialled: logged with
        its reason (a warning unless the caller chose it) and counted."""
        level = logging.INFO if reason in ("abandoned", "no_input") else logging.WARNING
        log.log(level, "kiosk call from %s (%s) on worker %s ended before dialling: %s%s",
                kiosk_id, source_ip or "-", worker_id, reason, f" ({detail})" if detail else "")
        self._observe("setup_failure", reason)

    def _setup(self, command: str):
        """The set-up gate, its refusal as CoreBusy (logged: the kiosk hears 503)."""
        gate = self.setup_gate

        @contextlib.asynccontextmanager
        async def admitted():
            try:
                async with gate.admitted(command):
                    yield
            except SetupBusy as e:
                log.warning("%s refused: %s", command, e)
                raise CoreBusy(str(e)) from None
        return admitted()

    async def _admit_kiosk(self, kiosk_id: str, source_ip: str | None) -> bool:
        now = self.clock()
        ip = parse_source_ip(source_ip)
        async with self.pool.acquire() as conn:
            sources = await conn.fetchval(
                "SELECT sources FROM kiosk WHERE id = $1 AND active", kiosk_id)
            if sources is None:
                raise KioskUnknown(kiosk_id)
            if not self._source_admitted(sources, ip):
                await self._source_mismatch(conn, now, "admit_kiosk", kiosk_id,
                                            str(ip) if ip is not None else None, None)
                raise KioskSourceMismatch(kiosk_id, source_ip)
        return True

    # -- PIN ------------------------------------------------------------------------------------
    async def check_pin(self, kiosk_id: str, keyed: str, source: str | None = None, *,
                        source_ip: str | None = None, worker_id: str | None = None) -> PinAnswer:
        """The ladder, first refusal wins: unknown kiosk, source not the kiosk's, PIN header from a
        kiosk not trusted with it, kiosk or source throttled, malformed entry, unknown inmate,
        PIN locked, wrong secret. Every attempt leaves a pin_attempt row; refusals of the edge
        (mismatch, throttle, lockout) an edge_audit row as well. Attempts of one kiosk, one source
        and one inmate are serialized (advisory locks), so parallel guesses cannot outrun a count.

        The slow scrypt runs before that transaction, holding neither a lock nor a connection,
        when an unlocked look says the attempt will get that far (`_verify_first`); the ladder
        under the locks then decides with counts read there, and a refused attempt never reveals
        the verification. So one kiosk's or one source's checks do not queue behind each
        other's scrypt (they timed out under load), and an attempt already throttled or locked
        costs no scrypt. CoreBusy (nothing written) when the core has no room for another call
        set-up, or no PIN check could start in time (switch.control.setup_gate, switch.control.pin_verify)."""
        # One wait budget for the whole set-up: time spent at the gate is not waited again for a
        # PIN check slot, so a shed answer still comes well before the worker's deadline.
        deadline = asyncio.get_running_loop().time() + self.s.setup_wait_seconds_max
        async with self._setup("check_pin"):
            return await self._check_pin_admitted(kiosk_id, keyed, source, source_ip, worker_id,
                                                  deadline)

    async def _check_pin_admitted(self, kiosk_id, keyed, source, source_ip, worker_id,
                                  deadline: float) -> PinAnswer:
        now = self.clock()
        ip = parse_source_ip(source_ip)
        verified = await self._verify_first(now, kiosk_id, keyed, source, ip, deadline)
        async with self.pool.acquire() as conn, conn.transaction():
            kiosk = await conn.fetchrow(
                "SELECT facility_id, trusted, sources FROM kiosk WHERE id = $1 AND active", kiosk_id)
            if kiosk is None:
                raise KioskUnknown(kiosk_id)
            answer = await self._check_pin(conn, now, kiosk, kiosk_id, keyed, source, ip, worker_id,
                                           verified)
        if answer is None:              # refused after its audit rows were committed
            raise KioskSourceMismatch(kiosk_id, source_ip)
        return answer

    async def _verify_first(self, now, kiosk_id, keyed, source, ip,
                            deadline: float | None = None) -> tuple[bytes, bool] | None:
        """(the PIN hash verified against, whether the secret matches) when an unlocked read says
        the ladder will reach the secret; None otherwise (the ladder refuses, or verifies itself)."""
        ip_text = str(ip) if ip is not None else None
        try:
            number, secret = split_keyed(keyed, self.s.pin_secret_digits)
        except PinFormatError:
            return None
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                """SELECT k.trusted, k.sources, i.pin_hash FROM kiosk k
                   JOIN inmate i ON i.facility_id = k.facility_id AND i.id = $2
                   WHERE k.id = $1 AND k.active""", kiosk_id, number)
            if row is None or not self._source_admitted(row["sources"], ip) or (
                    source == "sip_header" and not (row["trusted"] and row["sources"])):
                return None
            since = now - timedelta(seconds=self.throttle.window_seconds)
            counts = await conn.fetchrow(
                """SELECT count(*) FILTER (WHERE kiosk = $1) AS kiosk_failures,
                          count(*) FILTER (WHERE source_ip = $2::inet) AS source_failures,
                          count(*) FILTER (WHERE inmate_id = $5 AND outcome = 'wrong_secret'
                                           AND at > $6) AS inmate_failures
                   FROM pin_attempt WHERE at > least($3, $6) AND outcome = ANY($4::text[])
                     AND (kiosk = $1 OR source_ip = $2::inet OR inmate_id = $5)""",
                kiosk_id, ip_text, since, list(GUESS_OUTCOMES), number,
                now - timedelta(seconds=self.s.pin_window_seconds))
        if self.throttle.scope(counts["kiosk_failures"], counts["source_failures"]) is not None \
                or counts["inmate_failures"] >= self.s.pin_failures_max:
            return None                 # refused unchecked (or, rarely, checked under the lock)
        pin_hash = bytes(row["pin_hash"])
        try:
            wait = None if deadline is None else deadline - asyncio.get_running_loop().time()
            return pin_hash, await self.pin_verifier.verify(secret, pin_hash, wait_seconds=wait)
        except VerifierBusy as e:
            # Shed before any write: under overload the answer must be fast and cheap.
            self._observe("pin", "busy")
            log.warning("PIN check from kiosk %s (%s) refused: %s", kiosk_id, ip_text, e)
            raise CoreBusy(str(e)) from None

    async def _check_pin(self, conn, now, kiosk, kiosk_id, keyed, source, ip,
                         worker_id, verified: tuple[bytes, bool] | None = None
                         ) -> PinAnswer | None:
        """check_pin's ladder inside its transaction; None: the source is not the kiosk's."""
        ip_text = str(ip) if ip is not None else None

        async def attempt(inmate, ok, outcome):
            self._observe("pin", outcome)
            await conn.execute(
                "INSERT INTO pin_attempt (at, kiosk, inmate_id, ok, outcome, source, source_ip) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7)", now, kiosk_id, inmate, ok, outcome, source,
                ip_text)

        if not self._source_admitted(kiosk["sources"], ip):
            await attempt(None, False, "source_mismatch")
            await self._source_mismatch(conn, now, "check_pin", kiosk_id, ip_text, None)
            return None
        if source == "sip_header" and not (kiosk["trusted"] and kiosk["sources"]):
            # Only a trusted kiosk, from a source registered for it, may pre-supply the PIN.
            await attempt(None, False, "untrusted_kiosk")
            return PinAnswer(False, False, self.s.pin_failures_max)
        # Both locks in one round trip (kiosk first, then source: always this order).
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('pin-kiosk:' || $1)), "
            "CASE WHEN $2::text IS NOT NULL "
            "THEN pg_advisory_xact_lock(hashtext('pin-source:' || $2)) END", kiosk_id, ip_text)
        since = now - timedelta(seconds=self.throttle.window_seconds)
        counts = await conn.fetchrow(
            """SELECT count(*) FILTER (WHERE kiosk = $1) AS kiosk_failures,
                      count(*) FILTER (WHERE source_ip = $2::inet) AS source_failures
               FROM pin_attempt WHERE at > $3 AND outcome = ANY($4::text[])
                 AND (kiosk = $1 OR source_ip = $2::inet)""",
            kiosk_id, ip_text, since, list(GUESS_OUTCOMES))
        scope = self.throttle.scope(counts["kiosk_failures"], counts["source_failures"])
        if scope is not None:
            await attempt(None, False, "throttled")
            await self._throttled(conn, now, scope, kiosk_id, ip_text, since)
            return PinAnswer(False, False, 0)
        try:
            number, secret = split_keyed(keyed, self.s.pin_secret_digits)
        except PinFormatError:
            await attempt(None, False, "malformed")
            return PinAnswer(False, False, self.s.pin_failures_max)
        # The inmate's lock is taken with its row; its failures are read by the next statement.
        inmate = await conn.fetchrow(
            "SELECT id, pin_hash, language, status, "
            "pg_advisory_xact_lock(hashtext('pin-inmate:' || id)) FROM inmate "
            "WHERE id = $1 AND facility_id = $2", number, kiosk["facility_id"])
        if inmate is None:
            await attempt(None, False, "unknown_inmate")
            return PinAnswer(False, False, self.s.pin_failures_max)
        # Only wrong secrets since the last success or unlock count: attempts refused while
        # locked never tried the secret, so they do not extend the lock.
        failures = await conn.fetch(
            """SELECT at FROM pin_attempt WHERE inmate_id = $1 AND outcome = 'wrong_secret'
               AND at > $2
               AND id > coalesce((SELECT max(id) FROM pin_attempt WHERE inmate_id = $1
                                  AND outcome = ANY($3::text[])), 0)""",
            number, now - timedelta(seconds=self.s.pin_window_seconds), list(RESET_OUTCOMES))
        recent = [r["at"] for r in failures]
        if self.lockout.locked(recent, now):
            await attempt(number, False, "locked")
            return PinAnswer(False, True, 0)
        pin_hash = bytes(inmate["pin_hash"])
        if verified is not None and verified[0] == pin_hash:
            ok = verified[1]            # verified before the locks (the usual way)
        else:                           # the unlocked look was wrong, or the PIN changed since
            try:
                ok = await self.pin_verifier.verify(secret, pin_hash)
            except VerifierBusy as e:   # the transaction rolls back: nothing was written
                self._observe("pin", "busy")
                raise CoreBusy(str(e)) from None
        await attempt(number, ok, "ok" if ok else "wrong_secret")
        if ok:
            token = self.pin_sessions.issue(kiosk_id, number, ip_text, worker_id,
                                            now.timestamp())
            return PinAnswer(True, False, self.s.pin_failures_max, number, inmate["language"],
                             token)
        left = self.lockout.attempts_left(recent + [now], now)
        if left == 0:
            self._observe("pin_lockout", "locked")
            await self._edge_audit(conn, now, "pin_locked_out", kiosk_id, number, ip_text,
                                   {"failures": len(recent) + 1,
                                    "window_seconds": self.s.pin_window_seconds})
        return PinAnswer(False, left == 0, left)

    def _source_admitted(self, sources, ip) -> bool:
        """A kiosk with registered sources is admitted only from one of them; one without is
        admitted from anywhere unless the node requires every kiosk to have sources."""
        if sources:
            return admits(sources, ip)
        return not self.s.kiosk_source_required

    async def _source_mismatch(self, conn, now, command, kiosk_id, ip_text, inmate_id) -> None:
        self._observe("kiosk_source_mismatch", command)
        await self._edge_audit(conn, now, "kiosk_source_mismatch", kiosk_id, inmate_id, ip_text,
                               {"command": command})

    async def _throttled(self, conn, now, scope, kiosk_id, ip_text, since) -> None:
        """Count every refused attempt; audit a throttle once per window and scope."""
        self._observe("pin_throttled", scope)
        seen = await conn.fetchval(
            """SELECT true FROM edge_audit WHERE event = 'pin_throttled' AND at > $1
                 AND detail->>'scope' = $2
                 AND (($2 = 'kiosk' AND kiosk = $3) OR ($2 = 'source' AND source_ip = $4::inet))
               LIMIT 1""", since, scope, kiosk_id, ip_text)
        if not seen:
            limit = (self.throttle.kiosk_failures_max if scope == "kiosk"
                     else self.throttle.source_failures_max)
            await self._edge_audit(conn, now, "pin_throttled", kiosk_id, None, ip_text,
                                   {"scope": scope, "failures_max": limit,
                                    "window_seconds": self.throttle.window_seconds})

    async def _edge_audit(self, conn, now, event, kiosk_id, inmate_id, ip_text, detail,
                          actor: str = "core") -> None:
        await conn.execute(
            "INSERT INTO edge_audit (at, event, kiosk, inmate_id, source_ip, actor, detail) "
            "VALUES ($1, $2, $3, $4, $5::inet, $6, $7::jsonb)",
            now, event, kiosk_id, inmate_id, ip_text, actor, json.dumps(detail))

    # -- authorization --------------------------------------------------------------------------
    async def authorize(self, kiosk_id: str, inmate_id: str, dialled: str,
                        worker_id: str | None = None, *, source_ip: str | None = None,
                        pin_session: str | None = None) -> AuthAnswer:
        now = self.clock()
        async with self.pool.acquire() as conn:
            kiosk = await conn.fetchrow(
                "SELECT id, facility_id, unit, active, sources FROM kiosk WHERE id = $1", kiosk_id)
            if kiosk is None:
                return AuthAnswer(False, policy.Deny.KIOSK_UNKNOWN.value)
            bind_contextvars(kiosk=kiosk_id, facility=kiosk["facility_id"])   # on log lines
            # The edge's checks come before any policy: who is calling, and did they key the PIN.
            ip = parse_source_ip(source_ip)
            ip_text = str(ip) if ip is not None else None
            if not self._source_admitted(kiosk["sources"], ip):
                await self._source_mismatch(conn, now, "authorize", kiosk_id, ip_text, inmate_id)
                self._observe("authorization", KIOSK_SOURCE_MISMATCH)
                return AuthAnswer(False, KIOSK_SOURCE_MISMATCH)
            refusal = self.pin_sessions.redeem(pin_session, kiosk_id, inmate_id, ip_text,
                                               worker_id, now.timestamp())
            if refusal is not None:
                await self._edge_audit(conn, now, "pin_session_refused", kiosk_id, inmate_id,
                                       ip_text, {"refusal": refusal, "worker_id": worker_id})
                self._observe("authorization", PIN_INVALID)
                return AuthAnswer(False, PIN_INVALID)
            fac = await conn.fetchrow(
                "SELECT id, name, time_zone, max_call_seconds, recording, trunk, default_language "
                "FROM facility WHERE id = $1", kiosk["facility_id"])
            facility = await self.pricing.facility(conn, fac["id"])
            number_class, e164 = self.pricing.classify(facility, dialled)
            facts_rows = await conn.fetchrow(
                _FACTS_SQL, inmate_id, e164 or "", fac["id"], kiosk["unit"],
                _local_midnight(now, fac["time_zone"]), _local_month(now, fac["time_zone"]))
            inmate = _json(facts_rows["inmate_json"])
            windows = facts_rows["windows"] or []
            schedule = Schedule(tuple(parse_window(w) for w in windows), facility.zone)
            contact = _json(facts_rows["contact_json"]) if e164 else None
            funding = []
            tariff_ok = True
            closed = False
            if e164 and inmate and contact and not contact["privileged"]:
                accounts = {"prepaid": facts_rows["prepaid_account"],
                            "debit": inmate["debit_account"]}
                horizon = fac["max_call_seconds"]
                for ptype in self.s.funding_order:
                    account = accounts.get(ptype)
                    if account is None:
                        continue
                    available = (await ledger.balance(conn, account)).available
                    try:
                        seconds = self.pricing.affordable(facility, number_class, e164, ptype, now,
                                                          available, horizon)
                        limit, why = self.pricing.destination_limit(
                            facility, number_class, e164, ptype, now, horizon)
                    except self.pricing.Closed:
                        closed = True
                        continue
                    except self.pricing.Unpriced:
                        tariff_ok = False
                        continue
                    funding.append(policy.Funding(ptype, account, seconds, limit, why))
            facts = policy.Facts(
                kiosk=policy.KioskFacts(kiosk["id"], kiosk["facility_id"], kiosk["unit"],
                                        kiosk["active"]),
                inmate=(policy.InmateFacts(inmate["id"], inmate["facility_id"], inmate["status"])
                        if inmate else None),
                number_class=number_class,
                refused_classes=self.s.refused_classes | ({number_class} if not tariff_ok and
                                                          not funding else frozenset()),
                blocked=facts_rows["blocked"],
                contact=(policy.ContactFacts(contact["status"], contact["privileged"])
                         if contact else None),
                schedule_seconds_left=schedule.seconds_left(now),
                facility_max_seconds=fac["max_call_seconds"],
                quota=policy.Quota(**{k: inmate[k] for k in ("calls_per_day", "minutes_per_day",
                                                             "calls_per_month", "minutes_per_month")})
                if inmate else policy.Quota(),
                usage=policy.Usage(facts_rows["calls_today"], facts_rows["seconds_today"],
                                   facts_rows["calls_month"], facts_rows["seconds_month"]),
                funding=tuple(funding),
                min_call_seconds=self.s.min_call_seconds,
                destination_closed=closed and not funding)
            decision = policy.decide(facts)
            if not decision.allow:
                self._observe("authorization", decision.reason.value)
                return AuthAnswer(False, decision.reason.value)
            call_id = uuid.uuid4()
            trunks = tuple(r["trunk"].format(e164=e164, number=e164.lstrip("+"))
                           for r in _json(facts_rows["routes_json"]) or [])
            if not trunks and fac["trunk"]:
                trunks = (fac["trunk"].format(e164=e164, number=e164.lstrip("+")),)
            ptype = decision.funding.payment_type if decision.funding else None
            rate = 0 if decision.privileged else self.pricing.rate_per_minute(
                facility, number_class, e164, ptype, now)
            record = bool(fac["recording"]) and not decision.privileged
            # One price per call: the version in force now prices all of it (switch.control.tariffs).
            version = None if decision.privileged else self.pricing.version_at(fac["id"], now)
            await conn.execute(
                """INSERT INTO call (id, state, facility_id, kiosk_id, inmate_id, e164, jurisdiction,
                       payment_type, funding_account, privileged, record, max_seconds, limited_by,
                       worker_id, authorized_at, last_seen_at, trunks, tariff_version)
                   VALUES ($1, 'authorized', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
                           $14, $14, $15, $16)""",
                call_id, fac["id"], kiosk_id, inmate_id, e164, number_class, ptype,
                decision.funding.account if decision.funding else None, decision.privileged,
                record, decision.max_seconds, decision.limited_by, worker_id, now, list(trunks),
                version)
            self._observe("authorization", "allow")
            return AuthAnswer(
                True, None, str(call_id), e164, trunks, rate, decision.max_seconds, record,
                decision.privileged, bool(contact["passive_accept"]) or decision.privileged,
                inmate["language"], inmate["name"], inmate["name_wav"], fac["name"],
                decision.funding.account if decision.funding else None)

    # -- the grant-and-charge loop ------------------------------------------------------------
    # Each operation: read the call (locked), decide with one pure step of switch.rules.session, carry
    # out its transfers as one linked chain, write its row, in one transaction. A ledger refusal
    # is handed back to the same step, which decides again (a shorter hold under a new id, a
    # collection instead of a post of an expired hold, a shortfall); none escapes as an error.

    async def accept(self, call_id: str) -> GrantAnswer:
        cid = _parse_call_id(call_id)
        now = self.clock()
        fast = await self._accept_fast(cid, now)
        if fast is not None:
            return fast
        first = {}                       # metrics count a committed first Accept only
        async def run(conn):
            call = await self._lock_call(conn, cid)
            st = await self._carry_out(conn, call, now, lambda m, cum, **kw: session.accept(
                m, cum, self.terms, self.books, **kw), start=call["accepted_at"] or now)
            if st.row is not None:
                await conn.execute("UPDATE call SET accepted_at = $2 WHERE id = $1", cid, now)
            first["accept"] = call["accepted_at"] is None and st.row is not None
            return self._grant(st, call_id)
        try:
            answer = await self._in_transaction(cid, run)
        finally:
            self._rows.pop(cid, None)
        if first.get("accept"):
            self._observe("called_party", "accept")
        return answer

    async def _accept_fast(self, cid: uuid.UUID, now: datetime) -> GrantAnswer | None:
        """The common first Accept without a row lock: the whole first period held on the
        optimistic try, carried out by group commit only if the call is still authorized, as
        read. Anything else (a resend, short money, a refusal) returns None: the careful path."""
        if self.group is None:
            return None
        call = await self._fast_row(cid)
        if call is None or call["state"] != CallState.AUTHORIZED.value:
            return None
        cum = await self._fast_cum(call, now)
        st = session.accept(_money(call), cum, self.terms, self.books, available=None,
                            answers={}, tries=0)
        if st.row is None or not isinstance(st.answer, session.GrantAnswer):
            return None
        if await self.group.advance(call, st, now, accepted=now) is None:
            self._rows.pop(cid, None)
            return None
        self._rows[cid] = _moved(call, st.row, accepted_at=now)
        self._observe("called_party", "accept")
        self._notes(cid, st)
        return _grant_answer(st.answer)

    async def continue_(self, call_id: str, period: int, talk_seconds: int) -> GrantAnswer:
        cid = _parse_call_id(call_id)
        now = self.clock()
        if period < 1 or talk_seconds < 0:
            raise BadRequest(f"period must be >= 1 and talk_seconds >= 0, got {period}, {talk_seconds}")
        fast = await self._continue_fast(cid, period, talk_seconds, now)
        if fast is not None:
            return fast
        async def run(conn):
            call = await self._lock_call(conn, cid)
            st = await self._carry_out(conn, call, now, lambda m, cum, **kw: session.advance(
                m, period, talk_seconds, cum, self.terms, self.books, **kw))
            if st.row is None and not isinstance(st.answer, session.Refusal):
                await conn.execute("UPDATE call SET last_seen_at = $2 WHERE id = $1", cid, now)
            return self._grant(st, call_id, period)
        try:
            return await self._in_transaction(cid, run)
        finally:
            self._rows.pop(cid, None)

    async def _continue_fast(self, cid: uuid.UUID, period: int, talk: int, now: datetime
                             ) -> GrantAnswer | None:
        """The common Continue without a row lock: the step decided optimistically (the whole
        next period affordable) from the row as this core last committed it (or an unlocked
        read), carried out (by group commit, or alone by `call_advance`) only if the call is
        still exactly there. Anything else returns None and the careful path decides under
        the row lock."""
        call = self._rows.get(cid) or await self._fast_row(cid)     # (a hit needs no await)
        if (call is None or call["state"] != CallState.TALKING.value
                or call["period"] != period):
            self._rows.pop(cid, None)
            return None
        cum = call.get(_CUM) or await self._fast_cum(call)
        st = session.advance(_money(call), period, talk, cum, self.terms, self.books,
                             available=None, answers={}, tries=0)
        if (st.needs_balance or st.row is None
                or not isinstance(st.answer, session.GrantAnswer)):
            return None
        if self.group is None:
            async with self.pool.acquire() as conn:
                applied = await self._advance_alone(conn, call, st, now)
        else:
            applied = await self.group.advance(call, st, now)
        if not applied:
            self._rows.pop(cid, None)
            return None
        self._rows[cid] = _moved(call, st.row)
        self._notes(cid, st)
        return _grant_answer(st.answer)

    async def _fast_row(self, cid: uuid.UUID) -> dict | None:
        """The call's row as this core last committed it, or as read now (unlocked)."""
        call = self._rows.get(cid)
        if call is not None:
            return call
        async with self.pool.acquire() as conn:
            rec = await conn.fetchrow(_FAST_ROW_SQL, cid)
            if rec is None:
                return None
            call = dict(rec)
            if not call["privileged"] and call["payment_type"] is not None:
                await self.pricing.facility(conn, call["facility_id"])   # cached for _fast_cum
        if call["state"] in (CallState.AUTHORIZED.value, CallState.TALKING.value):
            while len(self._rows) >= ROWS_CACHED_MAX:
                self._rows.pop(next(iter(self._rows)))      # the oldest goes first
            self._rows[cid] = call
        return call

    async def _fast_cum(self, call: dict, start: datetime | None = None):
        """The call's price totals; kept on the fast path's row (with their memo of prices
        already computed), since the pinned version and the start never change once accepted."""
        cum = call.get(_CUM)
        if cum is not None and start is None:
            return cum
        if call["privileged"] or call["payment_type"] is None:
            cum = _free
        elif (facility := self.pricing.cached_facility(call["facility_id"])) is None:
            async with self.pool.acquire() as conn:
                cum = await self._cum(conn, call, start)
        else:
            cum = self.pricing.cum(facility, call["jurisdiction"], call["e164"],
                                   call["payment_type"], start or _accepted(call),
                                   call["tariff_version"])
        call[_CUM] = cum
        return cum

    async def _advance_alone(self, conn, call, st: session.Step, now: datetime) -> bool:
        r = st.row
        started = time.perf_counter()
        try:
            codes = await conn.fetchval(
                "SELECT call_advance($1, $2, $3, $4, $5, $6::uuid[], $7::smallint[], $8::text[], "
                "$9::text[], $10::bigint[], $11::uuid[], $12::integer[], $13::boolean[], "
                "$14::text[], $15::text[], $16::timestamptz, $17::integer, $18, $19, $20, $21, "
                "$22, $23, $24, $25, $26)",
                call["id"], call["state"], call["period"], call["posted_until"],
                call["grant_until"], *ledger.batch_args(list(st.transfers), now=now),
                r.state.value, r.period, r.grant_until, r.posted_until, r.last_grant, r.hold_call,
                r.hold_tax, r.shortfall_micros, now)
        except asyncpg.UniqueViolationError:
            return False                 # a concurrent resend of the same ids: be careful
        finally:
            self._observe("ledger", "submit", seconds=time.perf_counter() - started)
        return codes is not None and all(c in (0, 23) for c in codes)

    async def end(self, call_id: str, talk_seconds: int, disposition: str, *,
                  recording: str | None = None, trunk: str | None = None,
                  sip_code: int | None = None) -> EndAnswer:
        cid = _parse_call_id(call_id)
        if talk_seconds < 0:
            raise BadRequest(f"talk_seconds must be >= 0, got {talk_seconds}")
        now = self.clock()
        fast = await self._end_fast(cid, talk_seconds, disposition, now, recording=recording,
                                    trunk=trunk, sip_code=sip_code)
        if fast is not None:
            return fast
        return await self._settle(cid, talk_seconds, disposition, recording=recording, trunk=trunk,
                                  sip_code=sip_code, now=now)

    async def _end_fast(self, cid: uuid.UUID, talk: int, disposition: str, now: datetime, *,
                        recording, trunk, sip_code) -> EndAnswer | None:
        """The common End without a row lock: a talking call's settle step decided from the row
        as this core last committed it (or an unlocked read), carried out with other calls' Ends
        by group commit (the chain, the ended row and its CDR, exactly as `_settle` writes
        them) only if the call is still exactly there. Anything else (a step that needs the
        balance or a release, a late End, a stale row, a refusal, a failed batch) returns None:
        the careful path decides under the row lock."""
        if self.group_ends is None:
            return None
        call = await self._fast_row(cid)
        if call is None or call["state"] not in (CallState.TALKING.value, CallState.LAST.value):
            return None
        # The call's fields on its log lines, as the careful path's row lock binds them.
        bind_contextvars(call_id=str(cid), kiosk=call["kiosk_id"], facility=call["facility_id"])
        cum = await self._fast_cum(call)
        st = session.settle(_money(call), talk, cum, self.terms, self.books, available=None,
                            answers={}, tries=0)
        if (st.needs_balance or st.releases or st.row is None
                or not isinstance(st.answer, session.Settlement)):
            return None
        s: session.Settlement = st.answer
        billed, ending = self._ending(call, s, disposition, recording, trunk, sip_code)
        applied = await self.group_ends.end(call, st, now, ending)
        self._rows.pop(cid, None)            # ended, or the careful path reads it again
        if not applied:
            return None
        self._notes(cid, st)
        self._ended(disposition, call["facility_id"], billed, s.charge.call_micros,
                    s.charge.total)
        return EndAnswer(billed, s.charge.total, str(cid))

    def _ending(self, call, s: session.Settlement, disposition: str, recording, trunk,
                sip_code) -> tuple[int, group_commit.Ending]:
        """An End's priced CDR fields, as the careful path writes them (its billed seconds)."""
        talk = s.talk_seconds
        price = (self.pricing.itemize(call, _accepted(call), talk)
                 if talk and call["accepted_at"] is not None else None)
        billed = price.billed_seconds if price else 0
        return billed, group_commit.Ending(
            disposition, billed, price.charges_json if price else "{}",
            price.tariff_version if price else _version_name(call["tariff_version"]),
            recording, trunk, sip_code)

    def _ended(self, disposition: str, facility: str, billed: int, revenue: int,
               charged: int) -> None:
        """A call end, observed once it is committed."""
        self._observe("call_end", disposition, facility=facility, billed_seconds=billed,
                      revenue=revenue)
        log.info("call ended: %s, %ds billed, %d micro-units charged", disposition, billed,
                 charged)

    async def close_lost(self, call_id: uuid.UUID) -> EndAnswer:
        """Close a call whose worker went silent: charge only the talk it confirmed."""
        return await self._settle(call_id, None, "worker_lost")

    async def _settle(self, cid: uuid.UUID, talk_seconds: int | None, disposition: str, *,
                      recording=None, trunk=None, sip_code=None,
                      now: datetime | None = None) -> EndAnswer:
        now = now or self.clock()
        ended = {}                       # observed once committed (a retried run() overwrites)
        async def run(conn):
            ended.clear()
            call = await self._lock_call(conn, cid)
            st = await self._carry_out(conn, call, now, lambda m, cum, **kw: session.settle(
                m, talk_seconds, cum, self.terms, self.books, **kw))
            if st.answer is session.Refusal.ALREADY_ENDED:
                cdr = await conn.fetchrow("SELECT billed_seconds, total_micros FROM cdr "
                                          "WHERE call_id = $1", cid)
                return EndAnswer(cdr["billed_seconds"], cdr["total_micros"], str(cid))
            s: session.Settlement = st.answer
            talk = s.talk_seconds
            billed, ending = self._ending(call, s, disposition, recording, trunk, sip_code)
            if call["state"] == CallState.ENDED.value:
                # A late End: the call was closed as lost; its CDR now says what its worker
                # measured (one CDR per call, amended once: late_end_at marks it).
                before = await conn.fetchrow("SELECT billed_seconds, call_micros FROM cdr "
                                             "WHERE call_id = $1", cid)
                ids = await conn.fetchval(
                    """UPDATE call SET disposition = $2, late_end_at = $3 WHERE id = $1
                       RETURNING transfer_ids""", cid, disposition, now)
                await conn.execute(
                    """UPDATE cdr SET talk_seconds = $2, billed_seconds = $3, disposition = $4,
                           call_micros = $5, tax_micros = $6, total_micros = $7, charges = $8,
                           transfer_ids = $9, shortfall_micros = $10, late_end_at = $11,
                           recording = coalesce($12, recording), trunk = coalesce($13, trunk),
                           sip_code = coalesce($14, sip_code)
                       WHERE call_id = $1""",
                    cid, talk, billed, disposition, s.charge.call_micros, s.charge.tax_micros,
                    s.charge.total, ending.charges_json, ids,
                    s.shortfall_micros, now, recording if call["record"] else None, trunk,
                    sip_code)
                self._observe("call_amend", "late_end", facility=call["facility_id"],
                              billed_seconds=billed - before["billed_seconds"],
                              revenue=s.charge.call_micros - before["call_micros"])
                return EndAnswer(billed, s.charge.total, str(cid))
            ids = await conn.fetchval(
                """UPDATE call SET ended_at = $2, disposition = $3 WHERE id = $1
                   RETURNING transfer_ids""", cid, now, disposition)
            await conn.execute(
                """INSERT INTO cdr (call_id, facility_id, kiosk_id, inmate_id, e164, jurisdiction,
                       payment_type, funding_account, privileged, authorized_at, accepted_at,
                       ended_at, talk_seconds, billed_seconds, disposition, call_micros, tax_micros,
                       total_micros, charges, tariff_version, transfer_ids, recording, worker_id,
                       trunk, sip_code, shortfall_micros)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                           $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)""",
                cid, call["facility_id"], call["kiosk_id"], call["inmate_id"], call["e164"],
                call["jurisdiction"], call["payment_type"], call["funding_account"],
                call["privileged"], call["authorized_at"], call["accepted_at"], now, talk, billed,
                disposition, s.charge.call_micros, s.charge.tax_micros, s.charge.total,
                ending.charges_json, ending.tariff_version, ids,
                recording if call["record"] else None, call["worker_id"], trunk, sip_code,
                s.shortfall_micros)
            ended.update(facility=call["facility_id"], revenue=s.charge.call_micros)
            return EndAnswer(billed, s.charge.total, str(cid))
        self._rows.pop(cid, None)
        try:
            answer = await self._in_transaction(cid, run)
        finally:
            self._rows.pop(cid, None)
        if ended:
            self._ended(disposition, ended["facility"], answer.billed_seconds, ended["revenue"],
                        answer.charged_micros)
        return answer

    async def _in_transaction(self, cid, run):
        """`run(conn)` in a transaction, again from the start when PostgreSQL aborted it for a
        lock cycle or a concurrent identical id: the decision is re-made from the row as it
        then is, so a retry never moves money twice."""
        for attempt in range(1, TRANSACTION_TRIES_MAX + 1):
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    return await run(conn)
            except UNREACHABLE:
                self._absent()
                raise
            except _RETRYABLE as e:
                self._observe("charging", "transaction_retried")
                log.warning("charging transaction retried call=%s attempt=%d error=%s", cid,
                            attempt, type(e).__name__)
                if attempt == TRANSACTION_TRIES_MAX:
                    raise LedgerAnomaly(str(cid), {"transaction": type(e).__name__}) from e

    async def _carry_out(self, conn, call, now: datetime, decide, *,
                         start: datetime | None = None) -> session.Step:
        """Decide a step, submit its chain, and on a refusal decide again with the ledger's
        answers, up to STEP_TRIES_MAX tries (the last one moves no new hold and books what it
        cannot collect, so it cannot be refused by funds); then write the step's row."""
        m = _money(call)
        cum = await self._cum(conn, call, start)
        answers: dict[str, ledger.TransferResult] = {}
        available: int | None = None
        locked = False
        for tries in range(session.STEP_TRIES_MAX):
            st = decide(m, cum, available=available, answers=answers, tries=tries)
            if (st.releases or st.transfers or st.needs_balance) and not locked:
                # The step may submit several batches (releases, tries): take every ledger row
                # they may touch now, in the ledger's order, so none of them waits for a row
                # while holding one that sorts after it (group commit and the sweeper lock in
                # that order too).
                await ledger.lock(conn, holds=m.holds.values(),
                                  accounts=[a for a in (m.account, self.books.revenue,
                                                        self.books.tax, self.books.shortfall)
                                            if a is not None])
                locked = True
            if st.releases:
                await self._release(conn, st.releases, now)
            if st.needs_balance:
                available = ((await ledger.balance(conn, m.account)).available
                             if m.account is not None else 0)
                st = decide(m, cum, available=available, answers=answers, tries=tries)
            if not st.transfers:
                break
            results = await self._submit(conn, list(st.transfers), now)
            refused = session.refusals(st.transfers, results)
            if not refused:
                break
            for what, code in refused.items():
                self._observe("charging", f"refused_{code.name.lower()}")
                log.info("ledger refused call=%s step_try=%d purpose=%s result=%s", m.call_id,
                         tries, what, code.name.lower())
            answers.update(refused)
            available = None            # re-read: the money may have moved meanwhile
        else:
            self._observe("charging", "ledger_anomaly")
            raise LedgerAnomaly(str(m.call_id), {k: v.name.lower() for k, v in answers.items()})
        if st.row is not None:
            r = st.row
            await conn.execute(
                """UPDATE call SET state = $2, period = $3, grant_until = $4, posted_until = $5,
                       last_grant = $6, hold_call = $7, hold_tax = $8, shortfall_micros = $9,
                       last_seen_at = $10, transfer_ids = transfer_ids || $11::uuid[]
                   WHERE id = $1""",
                m.call_id, r.state.value, r.period, r.grant_until, r.posted_until, r.last_grant,
                r.hold_call, r.hold_tax, r.shortfall_micros, now, [t.id for t in st.transfers])
        self._notes(m.call_id, st)
        return st

    async def _release(self, conn, releases, now: datetime) -> None:
        """Expire the call's own expired holds (the sweeper's ids), each on its own, in a
        savepoint: a sweeper doing the same at the same moment wins and nothing is lost."""
        for t in releases:
            try:
                async with conn.transaction():
                    await self._submit(conn, [t], now)
            except ledger.ConcurrentSubmission:
                continue

    def _notes(self, cid, st: session.Step) -> None:
        for note in st.notes:
            self._observe("charging", note)
            log.warning("charging outcome=%s call=%s state=%s", note, cid, st.state.value)

    def _grant(self, st: session.Step, call_id: str, period: int | None = None) -> GrantAnswer:
        a = st.answer
        if a is session.Refusal.ALREADY_ENDED:
            raise CallAlreadyEnded(call_id)
        if a is session.Refusal.INSUFFICIENT_FUNDS:
            raise InsufficientFunds(call_id)
        if a is session.Refusal.NOT_ACCEPTED:
            raise BadRequest(f"call {call_id} was never accepted")
        if a is session.Refusal.WRONG_PERIOD:
            raise BadRequest(f"call {call_id} is not in period {period} yet")
        return _grant_answer(a)

    async def block(self, call_id: str, scope: str) -> bool:
        cid = _parse_call_id(call_id)
        if scope not in ("facility", "inmate"):
            raise BadRequest(f"block scope must be facility or inmate, got {scope!r}")
        async with self.pool.acquire() as conn:
            call = await conn.fetchrow("SELECT facility_id, inmate_id, e164 FROM call WHERE id = $1",
                                       cid)
            if call is None:
                raise UnknownCall(call_id)
            await conn.execute(
                """INSERT INTO block (pattern, is_prefix, scope, facility_id, inmate_id, reason,
                                      requested_by)
                   VALUES ($1, false, $2, $3, $4, 'called party pressed block', 'called_party')
                   ON CONFLICT DO NOTHING""",
                call["e164"], scope, call["facility_id"],
                call["inmate_id"] if scope == "inmate" else None)
            return True

    # -- liveness -------------------------------------------------------------------------------
    async def touch(self, call_ids: list[str], worker_id: str) -> list[str]:
        """A worker's heartbeat: refresh its calls; answer those the core does not know as open.
        A call is the worker's own only if its row names that worker (the one whose link
        authorized it): a call of another worker is neither refreshed (a heartbeat naming it
        must not keep it from the silence rule) nor known to the sender."""
        ids = []
        for c in call_ids:
            try:
                ids.append(uuid.UUID(c))
            except ValueError:
                continue
        if not ids:                 # an idle worker's heartbeat costs the database nothing
            return [c for c in call_ids if not c.startswith("setup:")]
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                # A liveness mark lost in a crash costs nothing (the next beat writes it again),
                # so it does not wait for the WAL flush: every worker beats, set-ups commit too.
                await conn.execute("SET LOCAL synchronous_commit = off")
                rows = await conn.fetch(_TOUCH_SQL, ids, self.clock(), worker_id)
        except UNREACHABLE:
            self._absent()          # a heartbeat the core could not record is not silence
            raise
        known = {str(r["id"]) for r in rows}
        # Calls still in set-up ("setup:...") have no row yet: they are not unknown.
        return [c for c in call_ids if c not in known and not c.startswith("setup:")]

    def _absent(self) -> None:
        """The core could not hear its workers (the database was out): the silence clock
        starts again when it is back."""
        if self._present_since is not None:
            log.warning("database unreachable: the silence rule waits %ss after it is back",
                        self.s.call_silence_seconds)
        self._present_since = None

    async def close_silent_calls(self) -> list[uuid.UUID]:
        """Close every open call not heard of for call_silence_seconds of the core's presence.

        Silence counts only while the core could hear: from its start, or from the database's
        return after an outage (a heartbeat or a report the core could not record is not the
        worker's silence). So after a restart or an outage every worker has the whole grace to
        reconnect and be heard, and the calls a crashed core or a dead worker left open are
        closed once it runs out. A worker's End that still comes after a close is charged then
        (switch.rules.session's late End)."""
        now = self.clock()
        silence = timedelta(seconds=self.s.call_silence_seconds)
        try:
            async with self.pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
                if self._present_since is None:
                    self._present_since = now
                if self._present_since > now - silence:
                    return []
                rows = await conn.fetch(
                    "SELECT id FROM call WHERE state <> 'ended' AND last_seen_at < $1 "
                    "ORDER BY last_seen_at, id", now - silence)
        except UNREACHABLE:
            self._absent()
            raise
        closed = []
        for r in rows:
            # One bad call never blocks the others: log it, count it, go on to the next.
            try:
                # Its own task: the call's log fields (bound in _lock_call) stay with it.
                await asyncio.ensure_future(self.close_lost(r["id"]))
            except Exception as e:    # noqa: BLE001 - the sweeper must outlive any one call
                self._observe("charging", "close_failed")
                log.error("close_silent_calls failed call=%s error=%r", r["id"], e)
                continue
            closed.append(r["id"])
        return closed

    # -- helpers --------------------------------------------------------------------------------
    async def _lock_call(self, conn, cid: uuid.UUID):
        call = await conn.fetchrow("SELECT * FROM call WHERE id = $1 FOR UPDATE", cid)
        if call is None:
            raise UnknownCall(str(cid))
        bind_contextvars(call_id=str(cid), kiosk=call["kiosk_id"], facility=call["facility_id"])
        return call

    async def _cum(self, conn, call, start: datetime | None = None):
        """The call's price totals under its pinned tariff version, from `start` (accepted)."""
        if call["privileged"] or call["payment_type"] is None:
            return lambda t: Charge(0, 0)
        facility = await self.pricing.facility(conn, call["facility_id"])
        return self.pricing.cum(facility, call["jurisdiction"], call["e164"], call["payment_type"],
                                start or _accepted(call), call["tariff_version"])

    async def _submit(self, conn, transfers: list[ledger.Transfer], now: datetime
                      ) -> list[ledger.Result]:
        # The core's clock is the ledger's: a hold's expiry and a post's lateness are judged on
        # the same time line as the call (and a test's injected clock drives both).
        started = time.perf_counter()
        try:
            return await ledger.submit(conn, transfers, now=now)
        finally:
            self._observe("ledger", "submit", seconds=time.perf_counter() - started)

    def _observe(self, what: str, outcome: str, **kw) -> None:
        if self.observer is not None:
            self.observer(what, outcome, **kw)


_CUM = "price_totals"        # the fast path's row: its call's price totals (not a column)


def _free(t: int) -> Charge:
    return Charge(0, 0)


def _moved(call: dict, r: session.Row, **more) -> dict:
    """The fast path's copy of a call row after its step applied."""
    return {**call, "state": r.state.value, "period": r.period, "grant_until": r.grant_until,
            "posted_until": r.posted_until, "hold_call": r.hold_call, "hold_tax": r.hold_tax,
            "shortfall_micros": r.shortfall_micros, **more}


def _money(call) -> session.Money:
    return session.Money(
        call_id=call["id"], state=CallState(call["state"]), period=call["period"],
        grant_until=call["grant_until"], posted_until=call["posted_until"],
        max_seconds=call["max_seconds"],
        account=None if call["privileged"] else call["funding_account"],
        hold_call=call["hold_call"], hold_tax=call["hold_tax"],
        shortfall_micros=call["shortfall_micros"],
        closed_lost=_closed_lost(call))


def _closed_lost(call) -> bool:
    """Closed by the silence rule, and no End of its worker settled since (read from the full
    row; the fast path's row never concerns an ended call)."""
    keys = call.keys()
    return ("disposition" in keys and "late_end_at" in keys and call["state"] == "ended"
            and call["disposition"] == "worker_lost" and call["late_end_at"] is None)


def _grant_answer(a: session.GrantAnswer) -> GrantAnswer:
    return GrantAnswer(a.grant_until, a.last, a.warn_at)


def _version_name(version: int | None) -> str | None:
    return None if version is None else str(version)


def _json(text):
    return None if text is None else json.loads(text)


def _accepted(call) -> datetime:
    return call["accepted_at"] or call["authorized_at"]


def _parse_call_id(call_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(call_id)
    except (ValueError, TypeError):
        raise UnknownCall(call_id) from None


def _local_midnight(now: datetime, tz: str) -> datetime:
    from zoneinfo import ZoneInfo
    local = now.astimezone(ZoneInfo(tz))
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def _local_month(now: datetime, tz: str) -> datetime:
    return _local_midnight(now, tz).replace(day=1)


# A heartbeat: every open call it names that is its worker's ($3) is known; their rows are
# refreshed in id order (the order group commit locks them in), skipping a row a step holds now:
# that step is the call's news and writes last_seen_at itself, and a heartbeat never queues
# behind it.
_TOUCH_SQL = """
WITH open AS (SELECT id FROM call WHERE id = ANY ($1::uuid[]) AND state <> 'ended'
                                    AND worker_id = $3),
     touched AS (UPDATE call c SET last_seen_at = $2
                 FROM (SELECT id FROM call WHERE id IN (SELECT id FROM open)
                       ORDER BY id FOR UPDATE SKIP LOCKED) l
                 WHERE c.id = l.id)
SELECT id FROM open"""

# What a Continue's step reads of the call: not the growing transfer_ids list.
_FAST_ROW_SQL = """
SELECT id, state, period, grant_until, posted_until, max_seconds, funding_account, privileged,
       hold_call, hold_tax, shortfall_micros, facility_id, jurisdiction, e164, payment_type,
       tariff_version, accepted_at, authorized_at, kiosk_id
FROM call WHERE id = $1"""

# Everything authorize needs about the inmate and the number, in one round trip.
_FACTS_SQL = """
SELECT
  (SELECT to_jsonb(i) - 'pin_hash' FROM inmate i WHERE i.id = $1) AS inmate_json,
  (SELECT to_jsonb(c) FROM contact c WHERE c.inmate_id = $1 AND c.e164 = $2) AS contact_json,
  EXISTS (SELECT 1 FROM block b
          WHERE (b.pattern = $2 OR (b.is_prefix AND $2 LIKE b.pattern || '%'))
            AND (b.scope = 'global' OR (b.scope = 'facility' AND b.facility_id = $3)
                 OR (b.scope = 'inmate' AND b.inmate_id = $1))) AS blocked,
  (SELECT ledger_account FROM phone_account WHERE e164 = $2) AS prepaid_account,
  coalesce((SELECT array_agg(spec ORDER BY id) FROM calling_window
            WHERE facility_id = $3 AND unit IS NOT DISTINCT FROM $4),
           (SELECT array_agg(spec ORDER BY id) FROM calling_window
            WHERE facility_id = $3 AND unit IS NULL)) AS windows,
  (SELECT count(*) FROM call WHERE inmate_id = $1 AND accepted_at >= $5)::int AS calls_today,
  (SELECT coalesce(sum(CASE WHEN state = 'ended' THEN posted_until ELSE grant_until END), 0)
     FROM call WHERE inmate_id = $1 AND accepted_at >= $5)::int AS seconds_today,
  (SELECT count(*) FROM call WHERE inmate_id = $1 AND accepted_at >= $6)::int AS calls_month,
  (SELECT coalesce(sum(CASE WHEN state = 'ended' THEN posted_until ELSE grant_until END), 0)
     FROM call WHERE inmate_id = $1 AND accepted_at >= $6)::int AS seconds_month,
  (SELECT jsonb_agg(to_jsonb(r) ORDER BY length(r.prefix) DESC, r.priority)
     FROM route r WHERE $2 LIKE r.prefix || '%') AS routes_json
"""
