"""What must hold after every simulated run, checked against the database and what the workers saw.

1. The ledger verifies (its invariants 1-7, `ledger.verify`).
2. Every call the core authorized is ended with exactly one CDR, and every call a worker learned
   of is known to the core.
3. What a call cost is the price of the talk seconds its worker measured, under the tariff
   version in force when it was authorized (the core caches tariffs for
   `switch.control.tariffs.TARIFF_TTL_SECONDS`, so the version in force that long before is accepted too,
   when the CDR names it), and the CDR's talk seconds are the measured ones. A call whose worker
   died or whose End never reached the core is closed by the core without the worker's
   measurement: it may cost less than its talk, never more. A call no worker knew of costs 0.
   The CDR's total is what the ledger moved for the call.
4. No hold outlives its call: none is open at the end, none expired after its call ended.
5. Money is conserved: every prepaid and debit account lost exactly what its calls' CDRs say they
   cost less what was written off, and holds nothing; revenue and tax received the CDRs' totals;
   the shortfall account wrote off the CDRs' shortfalls.
"""
from __future__ import annotations

from datetime import timedelta

import ledger
from rating import pricing
from rating.jurisdiction import Jurisdiction, JurisdictionClass
from rating.tariff import PaymentType, Tariff
from switch.control.tariffs import TARIFF_TTL_SECONDS

from .world import FACILITY

__all__ = ["check_run", "expected_charge"]

VIOLATIONS_MAX = 40
SHORTFALL = "call_shortfall"      # where the core books what an account could no longer pay


def _version_at(versions, at):
    found = None
    for v in sorted(versions, key=lambda v: (v.effective_from, v.number)):
        if v.effective_from <= at:
            found = v
    return found


def expected_charge(version, call, talk: int) -> int:
    """The price of `talk` seconds of this call under one tariff version alone."""
    if talk <= 0 or call["privileged"] or call["payment_type"] is None:
        return 0
    tariff = Tariff(FACILITY, "America/Los_Angeles", (version,))
    p = pricing.price(tariff, Jurisdiction(JurisdictionClass(call["jurisdiction"]), call["e164"]),
                      PaymentType(call["payment_type"]), version.effective_from, talk)
    return p.total_micros


def _version_number(text) -> int | None:
    if text is None:
        return None
    digits = "".join(ch for ch in str(text).split(":")[-1] if ch.isdigit())
    return int(digits) if digits else None


async def check_run(conn, world, records, *, settled: bool) -> list[str]:
    out: list[str] = []
    report = await ledger.verify(conn)
    if not report.ok:
        out += [f"ledger verify: invariant {v.invariant}: {v.detail}" for v in report.violations]
    calls = {str(r["id"]): r for r in await conn.fetch("SELECT * FROM call")}
    cdrs = {str(r["call_id"]): r for r in await conn.fetch("SELECT * FROM cdr")}
    ids = list(calls)
    moved: dict[str, dict[str, int]] = {}
    for r in await conn.fetch(
            "SELECT ref, debit_account_id, sum(amount)::bigint AS amount FROM ledger_transfer "
            "WHERE kind IN (1, 3) AND ref = ANY($1::text[]) GROUP BY ref, debit_account_id", ids):
        moved.setdefault(r["ref"], {})[r["debit_account_id"]] = r["amount"]
    by_id = {r.call_id: r for r in records if r.call_id}
    charged_by_account: dict[str, int] = {}
    total_charged = total_shortfall = 0

    for rec in records:
        granted = max((u for u, _ in rec.grants), default=0)
        if rec.talk > granted:
            out.append(f"call {rec.call_id} (plan #{rec.plan.index}): the worker talked "
                       f"{rec.talk}s past its grant of {granted}s (fail-safe broken)")
        if rec.call_id and rec.call_id not in calls:
            out.append(f"call {rec.call_id} (plan #{rec.plan.index}): the worker has it, "
                       "the core does not")

    for cid, call in calls.items():
        rec = by_id.get(cid)
        who = (f"call {cid} (plan #{rec.plan.index}, {rec.disposition}, measured {rec.talk}s)"
               if rec else f"call {cid} (no worker knew it)")
        from_funding = moved.get(cid, {}).get(call["funding_account"], 0)
        written_off = moved.get(cid, {}).get(SHORTFALL, 0)
        elsewhere = {a: m for a, m in moved.get(cid, {}).items()
                     if a not in (call["funding_account"], SHORTFALL)}
        if elsewhere:
            out.append(f"{who}: money moved from accounts other than its funding account: "
                       f"{elsewhere}")
        cdr = cdrs.get(cid)
        if call["state"] != "ended" or cdr is None:
            out.append(f"{who}: not settled (state {call['state']}, "
                       f"{'a' if cdr else 'no'} CDR)" + ("" if settled else
                                                         " when the run stopped"))
            continue
        # What the call cost, as its CDR tells the family: the accounts must agree with it.
        shortfall = cdr.get("shortfall_micros", 0)
        if call["funding_account"]:
            charged_by_account[call["funding_account"]] = (
                charged_by_account.get(call["funding_account"], 0) + cdr["total_micros"]
                - shortfall)
        total_charged += cdr["total_micros"]
        total_shortfall += shortfall
        if rec is not None and cdr["disposition"] != rec.disposition:
            who += f" [CDR: {cdr['disposition']}]"
        if (cdr["total_micros"], shortfall) != (from_funding + written_off, written_off):
            out.append(f"{who}: CDR says {cdr['total_micros']} µ of which {shortfall} µ written "
                       f"off; the ledger took {from_funding} µ from the account and wrote off "
                       f"{written_off} µ")
        charged = from_funding + written_off
        # -- the price of the measured talk
        measured_by_core = rec is not None and rec.ended and not rec.worker_died
        talk = rec.talk if rec is not None else 0
        auth = call["authorized_at"]
        candidates = [v for v in (_version_at(world.versions, auth),
                                  _version_at(world.versions,
                                              auth - timedelta(seconds=TARIFF_TTL_SECONDS)))
                      if v is not None]
        named = _version_number(cdr["tariff_version"])
        version = next((v for v in candidates if v.number == named), candidates[0])
        expected = expected_charge(version, call, talk)
        if measured_by_core:
            if charged != expected:
                alt = {v.number: expected_charge(v, call, talk) for v in world.versions}
                out.append(f"{who}: charged {charged} µ, the price of {talk}s under version "
                           f"{version.number} (in force at authorization) is {expected} µ "
                           f"(CDR names version {cdr['tariff_version']}; prices by version: {alt})")
            if cdr["talk_seconds"] != talk:
                out.append(f"{who}: CDR talk_seconds {cdr['talk_seconds']}, the worker measured "
                           f"{talk}")
            if named is not None and talk > 0 and named not in {v.number for v in candidates}:
                out.append(f"{who}: CDR names tariff version {named}, in force at authorization: "
                           f"{[v.number for v in candidates]}")
        elif charged > expected:
            out.append(f"{who}: closed without the worker's End, charged {charged} µ, more "
                       f"than the {expected} µ its {talk}s of talk cost")
        if not measured_by_core and cdr["talk_seconds"] > talk:
            out.append(f"{who}: CDR talk_seconds {cdr['talk_seconds']} > {talk} talked")

    # -- holds
    for r in await conn.fetch(
            "SELECT t.ref, t.id, t.amount FROM ledger_hold_open h JOIN ledger_transfer t "
            "ON t.id = h.id WHERE t.ref = ANY($1::text[]) ORDER BY t.ref, t.id", ids):
        out.append(f"call {r['ref']}: hold {r['id']} of {r['amount']} µ still open after the run")
    for r in await conn.fetch(
            "SELECT h.ref, h.id, h.amount, e.created_at FROM ledger_transfer e "
            "JOIN ledger_transfer h ON e.pending_id = h.id "
            "WHERE e.kind = 5 AND h.ref = ANY($1::text[]) ORDER BY h.ref, h.id", ids):
        cdr = cdrs.get(r["ref"])
        if cdr is not None and r["created_at"] > cdr["ended_at"]:
            out.append(f"call {r['ref']}: hold {r['id']} of {r['amount']} µ outlived its call "
                       f"(expired {r['created_at'] - cdr['ended_at']} after the CDR)")

    # -- conservation
    for account, funded in sorted(world.funded.items()):
        b = await ledger.balance(conn, account)
        spent = funded - b.posted
        if spent != charged_by_account.get(account, 0) or b.pending != 0:
            out.append(f"account {account}: funded {funded} µ, lost {spent} µ and holds "
                       f"{-b.pending} µ; its calls' CDRs say "
                       f"{charged_by_account.get(account, 0)} µ")
    house = 0
    for a in ("revenue", "tax_payable"):
        house += (await ledger.balance(conn, a)).posted
    if house != total_charged:
        out.append(f"revenue and tax received {house} µ; the CDRs say {total_charged} µ")
    try:
        booked = -(await ledger.balance(conn, SHORTFALL)).posted
    except ledger.AccountNotFound:
        booked = 0
    if booked != total_shortfall:
        out.append(f"the shortfall account holds {booked} µ written off; the CDRs say "
                   f"{total_shortfall} µ")
    if len(out) > VIOLATIONS_MAX:
        out = out[:VIOLATIONS_MAX] + [f"... and {len(out) - VIOLATIONS_MAX} more"]
    return out


async def coverage(conn, records, period_seconds: int, lead_seconds: float) -> dict[str, int]:
    """What a run exercised: how many calls reached each of the situations the checks are for."""
    talked = [r for r in records if r.bridged]
    row = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE disposition = 'worker_lost') AS closed_as_lost, "
        "       count(*) FILTER (WHERE shortfall_micros > 0) AS with_shortfall "
        "FROM cdr") if await _has_column(conn, "cdr", "shortfall_micros") else None
    late_ends = await conn.fetchval(
        "SELECT count(*) FROM cdr WHERE late_end_at IS NOT NULL"
    ) if await _has_column(conn, "cdr", "late_end_at") else 0
    expired = await conn.fetchval(
        "SELECT count(DISTINCT h.ref) FROM ledger_transfer e JOIN ledger_transfer h "
        "ON e.pending_id = h.id WHERE e.kind = 5")
    return {
        "calls_talked": len(talked),
        "denied": sum(1 for r in records if r.denied),
        "short_last_grant": sum(1 for r in talked
                                if any(last and u % period_seconds for u, last in r.grants)),
        "hangup_in_lead": sum(1 for r in talked if _in_lead(r, period_seconds, lead_seconds)),
        "calls_with_expired_hold": expired,
        "closed_as_lost": row["closed_as_lost"] if row else 0,
        "with_shortfall": row["with_shortfall"] if row else 0,
        "late_end_after_close": late_ends,
    }


def _in_lead(r, period: int, lead: float) -> bool:
    """Hung up in the last `lead` seconds of a period (or on its boundary), Continue in flight."""
    m = r.talk % period
    return r.disposition == "completed" and r.talk > 0 and (m == 0 or m > period - lead)


async def _has_column(conn, table: str, column: str) -> bool:
    return await conn.fetchval("SELECT EXISTS (SELECT 1 FROM information_schema.columns "
                               "WHERE table_name = $1 AND column_name = $2)", table, column)
