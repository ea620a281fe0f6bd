"""The call-control core: decides every call and settles its money (I/O around the pure parts).

Each operation reads what it needs, decides with a pure function (`switch.policy.decide`,
`switch.session.plan_grant`), then writes the call row and the ledger transfers in ONE database
transaction. Transfer ids are derived from (call id, period, purpose), and the call row records how
far the call has got, so a repeated request, a retry after a lost answer or a restarted core never
moves money twice.

Money of a call: each billing period holds two pending transfers from the funding account, one to
revenue for the call charge and one to tax_payable for taxes and fees. At the end of a period both
are posted; on End the current pair is posted for what was used (the rest is released) or voided.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Awaitable, Callable

import asyncpg

import ledger
from switch import policy
from switch.numbers import InvalidNumber, to_e164
from switch.kiosk_source import admits, parse_source_ip
from switch.pin import (GUESS_OUTCOMES, RESET_OUTCOMES, Lockout, PinFormatError, Throttle,
                        check_secret, split_keyed)
from switch.pin_session import PinSessions
from switch.schedule import Schedule, parse_window
from switch.session import CallState, Charge, Event, Grant, plan_grant, step
from switch.tariffs import Pricing

__all__ = ["Core", "CoreSettings", "PinAnswer", "AuthAnswer", "GrantAnswer", "EndAnswer",
           "UnknownCall", "CallAlreadyEnded", "InsufficientFunds", "KioskUnknown", "BadRequest",
           "REVENUE", "TAX_PAYABLE"]

REVENUE = "revenue"
# Deny reasons of the edge, decided before policy (switch.protocol.DENY_REASONS).
KIOSK_SOURCE_MISMATCH = "kiosk_source_mismatch"   # the caller is not where its kiosk is
PIN_INVALID = "pin_invalid"                       # no PIN session for this kiosk and inmate
TAX_PAYABLE = "tax_payable"
CALL_NAMESPACE = uuid.UUID("3f0e4c1a-7d5b-4a51-8d0e-6c1b2a9f7e10")


class UnknownCall(LookupError):
    pass


class CallAlreadyEnded(Exception):
    pass


class InsufficientFunds(Exception):
    pass


class KioskUnknown(LookupError):
    pass


class KioskSourceMismatch(KioskUnknown):
    """The request claims a kiosk whose registered sources do not include the address the worker
    saw: the caller is not that kiosk (to the worker it is an unknown kiosk)."""

    def __init__(self, kiosk_id: str, source_ip: str | None):
        super().__init__(f"kiosk_source_mismatch: kiosk {kiosk_id!r} does not call from "
                         f"{source_ip or 'an unknown address'}")
        self.kiosk_id, self.source_ip = kiosk_id, source_ip


class BadRequest(ValueError):
    pass


@dataclass(frozen=True)
class CoreSettings:
    period_seconds: int = 60            # billing period: hold, post, hold the next
    warning_seconds: int = 60           # the one-minute warning before the last grant ends
    hold_slack_seconds: int = 30        # a hold outlives its period by this much, then expires
    min_call_seconds: int = 60
    funding_order: tuple[str, ...] = ("prepaid", "debit")
    refused_classes: frozenset[str] = frozenset({"emergency", "n11", "toll_free", "premium"})
    pin_secret_digits: int = 4
    pin_failures_max: int = 3
    pin_window_seconds: int = 900
    pin_kiosk_failures_max: int = 10    # failed guesses from one kiosk (any inmate) per window
    pin_source_failures_max: int = 10   # ... from one source address
    pin_throttle_window_seconds: int = 300
    pin_session_seconds: int = 300      # a PIN accepted this long ago no longer authorizes a call
    pin_sessions_max: int = 10_000      # PIN sessions held in memory (the oldest go first)
    kiosk_source_required: bool = False  # refuse kiosks that have no registered source networks
    worker_silence_seconds: int = 30
    block_scope: str = "facility"


@dataclass(frozen=True)
class PinAnswer:
    ok: bool
    locked: bool
    attempts_left: int
    inmate_id: str | None = None
    language: str | None = None
    pin_session: str | None = None     # for the one Authorize that follows (switch.pin_session)


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


def transfer_id(call_id: uuid.UUID, period: int, purpose: str) -> uuid.UUID:
    return uuid.uuid5(CALL_NAMESPACE, f"{call_id}:{period}:{purpose}")


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
        self.throttle = Throttle(settings.pin_kiosk_failures_max, settings.pin_source_failures_max,
                                 settings.pin_throttle_window_seconds)
        self.pin_sessions = PinSessions(ttl_seconds=settings.pin_session_seconds,
                                        sessions_max=settings.pin_sessions_max)
        self.clock = clock
        self.observer = observer          # metrics hooks (ops.metrics), optional
        self.lockout = Lockout(settings.pin_failures_max, settings.pin_window_seconds)

    # -- PIN ------------------------------------------------------------------------------------
    async def check_pin(self, kiosk_id: str, keyed: str, source: str | None = None, *,
                        source_ip: str | None = None, worker_id: str | None = None) -> PinAnswer:
        """The ladder, first refusal wins: unknown kiosk, source not the kiosk's, PIN header from a
        kiosk not trusted with it, kiosk or source throttled, malformed entry, unknown inmate,
        PIN locked, wrong secret. Every attempt leaves a pin_attempt row; refusals of the edge
        (mismatch, throttle, lockout) an edge_audit row as well. Attempts of one kiosk, one source
        and one inmate are serialized (advisory locks), so parallel guesses cannot outrun a count."""
        now = self.clock()
        ip = parse_source_ip(source_ip)
        async with self.pool.acquire() as conn, conn.transaction():
            kiosk = await conn.fetchrow(
                "SELECT facility_id, trusted, sources FROM kiosk WHERE id = $1 AND active", kiosk_id)
            if kiosk is None:
                raise KioskUnknown(kiosk_id)
            answer = await self._check_pin(conn, now, kiosk, kiosk_id, keyed, source, ip, worker_id)
        if answer is None:              # refused after its audit rows were committed
            raise KioskSourceMismatch(kiosk_id, source_ip)
        return answer

    async def _check_pin(self, conn, now, kiosk, kiosk_id, keyed, source, ip,
                         worker_id) -> PinAnswer | None:
        """check_pin's ladder inside its transaction; None: the source is not the kiosk's."""
        ip_text = str(ip) if ip is not None else None
        if True:

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
            # scrypt is deliberately slow: keep it off the reactor thread.
            ok = await asyncio.to_thread(check_secret, secret, bytes(inmate["pin_hash"]))
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
                    except self.pricing.Unpriced:
                        tariff_ok = False
                        continue
                    funding.append(policy.Funding(ptype, account, seconds))
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
                min_call_seconds=self.s.min_call_seconds)
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
            await conn.execute(
                """INSERT INTO call (id, state, facility_id, kiosk_id, inmate_id, e164, jurisdiction,
                       payment_type, funding_account, privileged, record, max_seconds, limited_by,
                       worker_id, authorized_at, last_seen_at, trunks)
                   VALUES ($1, 'authorized', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
                           $14, $14, $15)""",
                call_id, fac["id"], kiosk_id, inmate_id, e164, number_class, ptype,
                decision.funding.account if decision.funding else None, decision.privileged,
                record, decision.max_seconds, decision.limited_by, worker_id, now, list(trunks))
            self._observe("authorization", "allow")
            return AuthAnswer(
                True, None, str(call_id), e164, trunks, rate, decision.max_seconds, record,
                decision.privileged, bool(contact["passive_accept"]) or decision.privileged,
                inmate["language"], inmate["name"], inmate["name_wav"], fac["name"],
                decision.funding.account if decision.funding else None)

    # -- the grant-and-charge loop ------------------------------------------------------------
    async def accept(self, call_id: str) -> GrantAnswer:
        cid = _parse_call_id(call_id)
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            call = await self._lock_call(conn, cid)
            state = CallState(call["state"])
            if state is CallState.ENDED:
                raise CallAlreadyEnded(call_id)
            if state is not CallState.AUTHORIZED:
                return self._answer(call)           # a resent Accept: same answer
            cum = await self._cum(conn, call, now)
            grant, _ = await self._hold_next(conn, call, cum, 1, now)
            if grant is None:
                raise InsufficientFunds(call_id)
            event = Event.ACCEPT_LAST if grant.last else Event.ACCEPT
            new = step(state, event)
            row = await conn.fetchrow(
                """UPDATE call SET state = $2, accepted_at = $3, last_seen_at = $3, period = 1,
                       grant_until = $4, last_grant = $5, transfer_ids = transfer_ids || $6
                   WHERE id = $1 RETURNING *""",
                cid, new.value, now, grant.until, grant.last, self._hold_ids(cid, grant))
            return self._answer(row)

    async def continue_(self, call_id: str, period: int, talk_seconds: int) -> GrantAnswer:
        cid = _parse_call_id(call_id)
        now = self.clock()
        if period < 1 or talk_seconds < 0:
            raise BadRequest(f"period must be >= 1 and talk_seconds >= 0, got {period}, {talk_seconds}")
        async with self.pool.acquire() as conn:
            fast = await self._continue_fast(conn, cid, period, now)
        if fast is not None:
            return fast
        async with self.pool.acquire() as conn, conn.transaction():
            call = await self._lock_call(conn, cid)
            state = CallState(call["state"])
            if state is CallState.ENDED:
                raise CallAlreadyEnded(call_id)
            if state is CallState.AUTHORIZED:
                raise BadRequest(f"call {call_id} was never accepted")
            if period < call["period"] or state is CallState.LAST:
                await conn.execute("UPDATE call SET last_seen_at = $2 WHERE id = $1", cid, now)
                return self._answer(call)           # already continued past it, or nothing more
            if period > call["period"]:
                raise BadRequest(f"call {call_id} is in period {call['period']}, not {period}")
            cum = await self._cum(conn, call, _accepted(call))
            # Post the finished period in full (the worker held the legs up to grant_until) and
            # hold the next one, in one ledger batch on the common path.
            posts = self._posts(cid, period, call, cum, call["grant_until"])
            posted = {**dict(call), "posted_until": call["grant_until"]}
            grant, results = await self._hold_next(conn, posted, cum, period + 1, now, before=posts)
            _expect_ok(results[:len(posts)], posts, call_id)
            ids = [t.id for t in posts] + (self._hold_ids(cid, grant) if grant else [])
            if grant is None:
                # Not one more second is paid for: the current grant is the last one.
                new, until, last, k = step(state, Event.CONTINUE_LAST), call["grant_until"], True, period
            else:
                new = step(state, Event.CONTINUE_LAST if grant.last else Event.CONTINUE)
                until, last, k = grant.until, grant.last, grant.period
            row = await conn.fetchrow(
                """UPDATE call SET state = $2, period = $3, grant_until = $4, last_grant = $5,
                       last_seen_at = $6, posted_until = grant_until,
                       transfer_ids = transfer_ids || $7
                   WHERE id = $1 RETURNING state, grant_until, last_grant""",
                cid, new.value, k, until, last, now, ids)
            return self._answer(row)

    async def _continue_fast(self, conn, cid: uuid.UUID, period: int, now: datetime
                             ) -> GrantAnswer | None:
        """The common Continue in one round trip: the whole next period is affordable and nobody
        else touched the call. Anything else (a resend, money running out, a race) returns None
        and the careful path below decides."""
        call = await conn.fetchrow("SELECT * FROM call WHERE id = $1", cid)
        if call is None or call["state"] != CallState.TALKING.value or call["period"] != period:
            return None
        cum = await self._cum(conn, call, _accepted(call))
        posts = self._posts(cid, period, call, cum, call["grant_until"])
        grant = plan_grant(cum, period + 1, self.s.period_seconds, call["max_seconds"], None)
        if grant is None:
            return None
        holds = self._holds(cid, call, grant)
        new = step(CallState.TALKING, Event.CONTINUE_LAST if grant.last else Event.CONTINUE)
        started = time.perf_counter()
        try:
            codes = await conn.fetchval(
                "SELECT call_advance($1, $2, $3, $4::uuid[], $5::smallint[], $6::text[], "
                "$7::text[], $8::bigint[], $9::uuid[], $10::integer[], $11::boolean[], $12::text[], "
                "$13::text[], $14::timestamptz, $15::integer, $16, $17, $18, $19, $20)",
                cid, call["state"], period, *ledger.batch_args(posts + holds),
                new.value, grant.period, grant.until, grant.last, now)
        except asyncpg.UniqueViolationError:
            return None                  # a concurrent resend of the same ids: be careful
        finally:
            self._observe("ledger", "submit", seconds=time.perf_counter() - started)
        if codes is None or any(c not in (0, 23) for c in codes):
            return None
        return self._answer({"state": new.value, "grant_until": grant.until,
                             "last_grant": grant.last})

    async def end(self, call_id: str, talk_seconds: int, disposition: str, *,
                  recording: str | None = None, trunk: str | None = None,
                  sip_code: int | None = None) -> EndAnswer:
        cid = _parse_call_id(call_id)
        if talk_seconds < 0:
            raise BadRequest(f"talk_seconds must be >= 0, got {talk_seconds}")
        return await self._settle(cid, talk_seconds, disposition, recording=recording, trunk=trunk,
                                  sip_code=sip_code, event=Event.END)

    async def close_lost(self, call_id: uuid.UUID) -> EndAnswer:
        """Close a call whose worker went silent: charge only the periods it confirmed."""
        return await self._settle(call_id, None, "worker_lost", event=Event.LOST)

    async def _settle(self, cid: uuid.UUID, talk_seconds: int | None, disposition: str, *,
                      event: Event, recording=None, trunk=None, sip_code=None) -> EndAnswer:
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            call = await self._lock_call(conn, cid)
            state = CallState(call["state"])
            if state is CallState.ENDED:
                cdr = await conn.fetchrow("SELECT billed_seconds, total_micros FROM cdr "
                                          "WHERE call_id = $1", cid)
                return EndAnswer(cdr["billed_seconds"], cdr["total_micros"], str(cid))
            new = step(state, event)
            transfers: list[ledger.Transfer] = []
            if state is CallState.AUTHORIZED:
                talk = 0
                cum = None
            else:
                # Never charge past what was granted, nor less than what was already posted.
                talk = call["posted_until"] if talk_seconds is None else talk_seconds
                talk = max(call["posted_until"], min(talk, call["grant_until"]))
                cum = await self._cum(conn, call, _accepted(call))
                transfers = self._posts(cid, call["period"], call, cum, talk, final=True)
                results = await self._submit(conn, transfers)
                _expect_ok(results, transfers, str(cid))
            price = (self.pricing.itemize(call, _accepted(call), talk) if cum is not None and talk
                     else None)
            charge = cum(talk) if cum is not None else Charge(0, 0)
            billed = price.billed_seconds if price else 0
            ids = list(call["transfer_ids"]) + [t.id for t in transfers]
            await conn.execute(
                """UPDATE call SET state = $2, ended_at = $3, last_seen_at = $3, disposition = $4,
                       posted_until = $5, transfer_ids = $6 WHERE id = $1""",
                cid, new.value, now, disposition, talk, ids)
            await conn.execute(
                """INSERT INTO cdr (call_id, facility_id, kiosk_id, inmate_id, e164, jurisdiction,
                       payment_type, funding_account, privileged, authorized_at, accepted_at,
                       ended_at, talk_seconds, billed_seconds, disposition, call_micros, tax_micros,
                       total_micros, charges, tariff_version, transfer_ids, recording, worker_id,
                       trunk, sip_code)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                           $17, $18, $19, $20, $21, $22, $23, $24, $25)""",
                cid, call["facility_id"], call["kiosk_id"], call["inmate_id"], call["e164"],
                call["jurisdiction"], call["payment_type"], call["funding_account"],
                call["privileged"], call["authorized_at"], call["accepted_at"], now, talk, billed,
                disposition, charge.call_micros, charge.tax_micros, charge.total,
                price.charges_json if price else "{}", price.tariff_version if price else None,
                ids, recording if call["record"] else None, call["worker_id"], trunk, sip_code)
            self._observe("call_end", disposition, facility=call["facility_id"],
                          billed_seconds=billed, revenue=charge.call_micros)
            return EndAnswer(billed, charge.total, str(cid))

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
    async def touch(self, call_ids: list[str]) -> list[str]:
        """A worker's heartbeat: refresh its calls; answer those the core does not know as open."""
        ids = []
        for c in call_ids:
            try:
                ids.append(uuid.UUID(c))
            except ValueError:
                continue
        async with self.pool.acquire() as conn:
            rows = await conn.fetch("UPDATE call SET last_seen_at = $2 WHERE id = ANY($1::uuid[]) "
                                    "AND state <> 'ended' RETURNING id", ids, self.clock())
        known = {str(r["id"]) for r in rows}
        # Calls still in set-up ("setup:...") have no row yet: they are not unknown.
        return [c for c in call_ids if c not in known and not c.startswith("setup:")]

    async def close_silent_calls(self) -> list[uuid.UUID]:
        """Close every open call not heard of for worker_silence_seconds (also after a restart:
        the calls a crashed core left open are closed the same way once their grace runs out)."""
        cutoff = self.clock() - timedelta(seconds=self.s.worker_silence_seconds)
        async with self.pool.acquire() as conn:
            rows = await conn.fetch("SELECT id FROM call WHERE state <> 'ended' AND last_seen_at < $1",
                                    cutoff)
        closed = []
        for r in rows:
            await self.close_lost(r["id"])
            closed.append(r["id"])
        return closed

    # -- helpers --------------------------------------------------------------------------------
    async def _lock_call(self, conn, cid: uuid.UUID):
        call = await conn.fetchrow("SELECT * FROM call WHERE id = $1 FOR UPDATE", cid)
        if call is None:
            raise UnknownCall(str(cid))
        return call

    async def _cum(self, conn, call, start: datetime):
        if call["privileged"]:
            return lambda t: Charge(0, 0)
        facility = await self.pricing.facility(conn, call["facility_id"])
        return self.pricing.cum(facility, call["jurisdiction"], call["e164"], call["payment_type"],
                                start)

    async def _hold_next(self, conn, call, cum, k: int, now: datetime, *,
                         before: list[ledger.Transfer] = ()
                         ) -> tuple[Grant | None, list[ledger.Result]]:
        """Hold period k, after submitting `before` in the same batch. First try the whole period
        without reading the balance (one round trip); if the account cannot cover it, read the
        balance and hold what it can, retrying if another call took the money in between.
        Returns the grant (None: not one more second) and the results of `before`'s batch."""
        cid = call["id"]
        first: list[ledger.Result] | None = None
        available = None
        for attempt in range(4):
            grant = plan_grant(cum, k, self.s.period_seconds, call["max_seconds"], available)
            holds = self._holds(cid, call, grant) if grant is not None else []
            batch = (list(before) if first is None else []) + holds
            results = await self._submit(conn, batch) if batch else []
            if first is None:
                first, results = results, results[len(before):]
            if grant is None:
                return None, first
            if all(_ok(r) for r in results):
                return grant, first
            if not any(_code(r) in ("insufficient_funds", "linked_event_failed") for r in results):
                _expect_ok(results, holds, str(cid))
            if call["privileged"]:
                break
            available = (await ledger.balance(conn, call["funding_account"])).available
        return None, first

    def _holds(self, cid, call, grant: Grant) -> list[ledger.Transfer]:
        expires = self.s.period_seconds + self.s.hold_slack_seconds
        out = []
        for purpose, credit, amount in (("hold-call", REVENUE, grant.hold.call_micros),
                                        ("hold-tax", TAX_PAYABLE, grant.hold.tax_micros)):
            if amount > 0:
                out.append(ledger.Transfer(
                    id=transfer_id(cid, grant.period, purpose), kind=ledger.TransferKind.HOLD,
                    debit=call["funding_account"], credit=credit, amount=amount,
                    expires_in=expires, linked=True,
                    code=ledger.TransferCode.CALL_CHARGE if purpose == "hold-call"
                    else ledger.TransferCode.TAX, ref=str(cid)))
        if out:
            out[-1] = _unlinked(out[-1])
        return out

    def _hold_ids(self, cid, grant: Grant) -> list[uuid.UUID]:
        return [transfer_id(cid, grant.period, p) for p, a in
                (("hold-call", grant.hold.call_micros), ("hold-tax", grant.hold.tax_micros)) if a > 0]

    def _posts(self, cid, period: int, call, cum, until: int, final: bool = False
               ) -> list[ledger.Transfer]:
        """Post period `period`'s holds for the talk up to `until` (void what is not used)."""
        start = call["posted_until"]
        used = cum(until) - cum(start)
        held = cum(call["grant_until"]) - cum(start)
        out = []
        for purpose, used_amount, held_amount in (("call", used.call_micros, held.call_micros),
                                                  ("tax", used.tax_micros, held.tax_micros)):
            if held_amount <= 0:
                continue                  # nothing was held for this part
            hold = transfer_id(cid, period, f"hold-{purpose}")
            if used_amount > 0:
                out.append(ledger.Transfer(id=transfer_id(cid, period, f"post-{purpose}"),
                                           kind=ledger.TransferKind.POST, hold=hold,
                                           amount=used_amount, ref=str(cid)))
            else:
                out.append(ledger.Transfer(id=transfer_id(cid, period, f"void-{purpose}"),
                                           kind=ledger.TransferKind.VOID, hold=hold, ref=str(cid)))
        return out

    def _answer(self, call) -> GrantAnswer:
        last = bool(call["last_grant"]) or call["state"] == CallState.LAST.value
        until = call["grant_until"]
        warn = max(0, until - self.s.warning_seconds) if last else None
        return GrantAnswer(until, last, warn)

    async def _submit(self, conn, transfers: list[ledger.Transfer]) -> list[ledger.Result]:
        started = time.perf_counter()
        try:
            return await ledger.submit(conn, transfers)
        finally:
            self._observe("ledger", "submit", seconds=time.perf_counter() - started)

    def _observe(self, what: str, outcome: str, **kw) -> None:
        if self.observer is not None:
            self.observer(what, outcome, **kw)


def _unlinked(t: ledger.Transfer) -> ledger.Transfer:
    import dataclasses
    return dataclasses.replace(t, linked=False)


def _code(result: ledger.Result) -> str:
    return result.result.name.lower()


def _ok(result: ledger.Result) -> bool:
    return result.succeeded


def _expect_ok(results, transfers, call_id: str) -> None:
    bad = [(t.id, _code(r)) for t, r in zip(transfers, results) if not _ok(r)]
    if bad:
        raise RuntimeError(f"ledger refused transfers of call {call_id}: {bad}")


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
