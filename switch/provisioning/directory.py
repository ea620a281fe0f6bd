"""Provisioning of who may call whom: kiosks, inmates, contacts, blocks, schedules, routes,
prepaid phone accounts. Used by the CLI and the HTTP API; each function validates its input and
raises `Invalid` naming the field, before it writes anything."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg

import ledger
from ledger.money import format_amount
from switch.errors import SwitchError
from switch.rules.kiosk_source import SourceError, parse_sources
from switch.rules.numbers import InvalidNumber, to_e164
from switch.rules.pin import PinFormatError, hash_secret
from switch.rules.schedule import ScheduleError, parse_window

__all__ = ["Invalid", "NotFound", "add_kiosk", "add_inmate", "set_pin", "add_contact",
           "set_contact_status", "add_block", "add_window", "add_route", "add_phone_account",
           "fund_phone_account", "unlock_pin", "inmate_account_id", "phone_account_id",
           "FUNDING_SOURCE", "FundingResult", "ensure_house_accounts", "fund_inmate", "record_name",
           "normalize_ref"]

PIN_SECRET_DIGITS = 4
FUNDING_SOURCE = "funding_clearing"         # deposits arrive from the payment processor's side
CONTACT_STATUSES = ("requested", "approved", "denied", "removed")


class Invalid(SwitchError, ValueError):
    """Provisioning input is unusable; the message names the field and the value."""


class NotFound(SwitchError, LookupError):
    """A referenced facility, inmate, kiosk or account does not exist."""


def inmate_account_id(inmate_id: str) -> str:
    return f"inmate:{inmate_id}"


def phone_account_id(e164: str) -> str:
    return f"prepaid:{e164}"


def _e164(field: str, text: str) -> str:
    try:
        return to_e164(text)
    except InvalidNumber as e:
        raise Invalid(f"{field}: {e}") from None


async def _facility_exists(conn: asyncpg.Connection, facility_id: str) -> None:
    if not await conn.fetchval("SELECT true FROM facility WHERE id = $1", facility_id):
        raise NotFound(f"facility {facility_id!r} does not exist")


async def add_kiosk(conn, kiosk_id: str, facility_id: str, *, unit: str | None = None,
                    sources: str | list[str] | tuple[str, ...] | None = None,
                    trusted: bool = False, source: str | None = None) -> None:
    """Add or update a kiosk. `sources` are the networks it calls from ('10.1.2.0/24' or a bare
    address, several in a list or comma-separated); none: from anywhere, unless the node requires
    sources (core.kiosk_source_required). A trusted kiosk's PIN header counts only from them.
    `source` (one network) is the older spelling of `sources`."""
    if sources is None:
        sources = source
    if not kiosk_id or not kiosk_id.replace("-", "").replace("_", "").isalnum():
        raise Invalid(f"kiosk id must be letters, digits, - or _, got {kiosk_id!r}")
    try:
        networks = parse_sources(sources) if sources else ()
    except SourceError as e:
        raise Invalid(f"kiosk {kiosk_id} sources: {e}") from None
    await _facility_exists(conn, facility_id)
    await conn.execute(
        """INSERT INTO kiosk (id, facility_id, unit, sources, trusted) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (id) DO UPDATE SET facility_id = $2, unit = $3, sources = $4, trusted = $5""",
        kiosk_id, facility_id, unit, list(networks), trusted)


async def unlock_pin(conn, inmate_id: str, actor: str, now=None) -> None:
    """An operator unlocks an inmate's PIN: failures before now stop counting. Leaves the reset
    point in pin_attempt and who did it in edge_audit."""
    if not actor.strip():
        raise Invalid("unlock needs the operator's name")
    async with conn.transaction():
        if not await conn.fetchval("SELECT true FROM inmate WHERE id = $1", inmate_id):
            raise NotFound(f"inmate {inmate_id!r} does not exist")
        at = now if now is not None else await conn.fetchval("SELECT now()")
        await conn.execute(
            "INSERT INTO pin_attempt (at, kiosk, inmate_id, ok, outcome, source) "
            "VALUES ($1, '-', $2, false, 'unlocked', 'operator')", at, inmate_id)
        await conn.execute(
            "INSERT INTO edge_audit (at, event, inmate_id, actor) VALUES ($1, 'pin_unlocked', $2, $3)",
            at, inmate_id, actor.strip())


async def add_inmate(conn, inmate_id: str, name: str, facility_id: str, pin: str, *,
                     unit: str | None = None, language: str = "en",
                     quotas: dict[str, int | None] | None = None, currency: str = "USD") -> None:
    if not (inmate_id.isdigit() and 3 <= len(inmate_id) <= 15):
        raise Invalid(f"inmate id must be 3-15 digits (it is keyed on a phone), got {inmate_id!r}")
    if not name.strip():
        raise Invalid("inmate name must not be empty")
    if language not in ("en", "es"):
        raise Invalid(f"language must be en or es, got {language!r}")
    if not (pin.isdigit() and len(pin) == PIN_SECRET_DIGITS):
        raise Invalid(f"PIN must be {PIN_SECRET_DIGITS} digits")
    quotas = quotas or {}
    for k, v in quotas.items():
        if k not in ("calls_per_day", "minutes_per_day", "calls_per_month", "minutes_per_month"):
            raise Invalid(f"unknown quota {k!r}")
        if v is not None and v < 0:
            raise Invalid(f"quota {k} must be >= 0, got {v}")
    await _facility_exists(conn, facility_id)
    account = inmate_account_id(inmate_id)
    async with conn.transaction():
        await ledger.create_accounts(conn, [ledger.Account(account, "inmate_debit", currency,
                                                           no_overdraft=True)])
        await conn.execute(
            """INSERT INTO inmate (id, name, facility_id, unit, pin_hash, language, debit_account,
                                   calls_per_day, minutes_per_day, calls_per_month, minutes_per_month)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)""",
            inmate_id, name.strip(), facility_id, unit, hash_secret(pin), language, account,
            quotas.get("calls_per_day"), quotas.get("minutes_per_day"),
            quotas.get("calls_per_month"), quotas.get("minutes_per_month"))


async def set_pin(conn, inmate_id: str, pin: str) -> None:
    try:
        hashed = hash_secret(pin)
    except PinFormatError as e:
        raise Invalid(str(e)) from None
    if len(pin) != PIN_SECRET_DIGITS:
        raise Invalid(f"PIN must be {PIN_SECRET_DIGITS} digits")
    if await conn.execute("UPDATE inmate SET pin_hash = $2 WHERE id = $1", inmate_id,
                          hashed) == "UPDATE 0":
        raise NotFound(f"inmate {inmate_id!r} does not exist")


async def add_contact(conn, inmate_id: str, number: str, *, name: str = "",
                      relationship: str = "", status: str = "requested",
                      privileged: bool = False, passive_accept: bool = False) -> str:
    e164 = _e164("number", number)
    if status not in CONTACT_STATUSES:
        raise Invalid(f"contact status must be one of {', '.join(CONTACT_STATUSES)}, got {status!r}")
    async with conn.transaction():
        limit = await conn.fetchval("SELECT contacts_max FROM inmate WHERE id = $1 FOR UPDATE",
                                    inmate_id)
        if limit is None:
            raise NotFound(f"inmate {inmate_id!r} does not exist")
        count = await conn.fetchval(
            "SELECT count(*) FROM contact WHERE inmate_id = $1 AND status IN ('requested', 'approved')"
            " AND e164 <> $2", inmate_id, e164)
        if status in ("requested", "approved") and count >= limit:
            raise Invalid(f"inmate {inmate_id} already has {count} contacts (limit {limit})")
        await conn.execute(
            """INSERT INTO contact (inmate_id, e164, name, relationship, status, privileged, passive_accept)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (inmate_id, e164) DO UPDATE SET name = $3, relationship = $4, status = $5,
                   privileged = $6, passive_accept = $7, updated_at = now()""",
            inmate_id, e164, name, relationship, status, privileged, passive_accept)
    return e164


async def set_contact_status(conn, inmate_id: str, number: str, status: str) -> None:
    e164 = _e164("number", number)
    if status not in CONTACT_STATUSES:
        raise Invalid(f"contact status must be one of {', '.join(CONTACT_STATUSES)}, got {status!r}")
    r = await conn.execute("UPDATE contact SET status = $3, updated_at = now() "
                           "WHERE inmate_id = $1 AND e164 = $2", inmate_id, e164, status)
    if r == "UPDATE 0":
        raise NotFound(f"inmate {inmate_id} has no contact {e164}")


async def add_block(conn, pattern: str, *, scope: str, facility_id: str | None = None,
                    inmate_id: str | None = None, prefix: bool = False, reason: str = "",
                    requested_by: str = "staff") -> None:
    if prefix:
        if not (pattern.startswith("+") and pattern[1:].isdigit()):
            raise Invalid(f"block prefix must be '+' and digits, got {pattern!r}")
        e164 = pattern
    else:
        e164 = _e164("number", pattern)
    if scope not in ("global", "facility", "inmate"):
        raise Invalid(f"block scope must be global, facility or inmate, got {scope!r}")
    if scope == "facility" and not facility_id:
        raise Invalid("a facility block needs --facility")
    if scope == "inmate" and not inmate_id:
        raise Invalid("an inmate block needs --inmate")
    await conn.execute(
        """INSERT INTO block (pattern, is_prefix, scope, facility_id, inmate_id, reason, requested_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING""",
        e164, prefix, scope, facility_id if scope != "global" else None,
        inmate_id if scope == "inmate" else None, reason, requested_by)


async def add_window(conn, facility_id: str, spec: str, *, unit: str | None = None) -> None:
    try:
        window = parse_window(spec)
    except ScheduleError as e:
        raise Invalid(str(e)) from None
    await _facility_exists(conn, facility_id)
    await conn.execute("INSERT INTO calling_window (facility_id, unit, spec) VALUES ($1, $2, $3)",
                       facility_id, unit, window.text())


async def add_route(conn, prefix: str, trunk: str, *, priority: int = 0, capacity: int = 0) -> None:
    if not (prefix.startswith("+") and (prefix[1:] == "" or prefix[1:].isdigit())):
        raise Invalid(f"route prefix must be '+' followed by digits, got {prefix!r}")
    if not trunk.startswith("sip:") or "{e164}" not in trunk and "{number}" not in trunk:
        raise Invalid(f"trunk must be a sip: URI template with {{e164}} or {{number}}, got {trunk!r}")
    await conn.execute(
        """INSERT INTO route (prefix, priority, trunk, capacity) VALUES ($1, $2, $3, $4)
           ON CONFLICT (prefix, priority) DO UPDATE SET trunk = $3, capacity = $4""",
        prefix, priority, trunk, capacity)


async def add_phone_account(conn, number: str, owner: str, *, currency: str = "USD") -> str:
    e164 = _e164("number", number)
    if not owner.strip():
        raise Invalid("account owner must not be empty")
    account = phone_account_id(e164)
    async with conn.transaction():
        await ledger.create_accounts(conn, [ledger.Account(account, "prepaid_phone", currency,
                                                           no_overdraft=True)])
        await conn.execute(
            """INSERT INTO phone_account (e164, owner, ledger_account) VALUES ($1, $2, $3)
               ON CONFLICT (e164) DO UPDATE SET owner = $2""", e164, owner.strip(), account)
    return e164


@dataclass(frozen=True)
class FundingResult:
    e164: str                   # the number funded (or the inmate id, for a debit account)
    amount: int
    transfer_id: uuid.UUID
    result: str                 # ok | exists (the reference was used before for the same deposit)


FUNDING_NAMESPACE = uuid.UUID("5b0c2a47-61f1-4d1e-9c55-2b1f0a7de001")


async def fund_phone_account(conn, number: str, amount_micros: int, ref: str) -> FundingResult:
    """Credit a family's prepaid account; idempotent on `ref` (a payment processor's reference)."""
    e164 = _e164("number", number)
    account = await conn.fetchval("SELECT ledger_account FROM phone_account WHERE e164 = $1", e164)
    if account is None:
        raise NotFound(f"no prepaid account for {e164}")
    return await _fund(conn, e164, account, amount_micros, ref)


async def fund_inmate(conn, inmate_id: str, amount_micros: int, ref: str) -> FundingResult:
    """Credit an inmate's debit account (e.g. from their trust account); idempotent on `ref`."""
    account = await conn.fetchval("SELECT debit_account FROM inmate WHERE id = $1", inmate_id)
    if account is None:
        raise NotFound(f"inmate {inmate_id!r} does not exist")
    return await _fund(conn, inmate_id, account, amount_micros, ref)


REF_LENGTH_MAX = 100


def normalize_ref(ref: str) -> str:
    """A payment reference as an idempotency key: surrounding and repeated blanks dropped,
    letters upper-cased, so `PAY-123 ` and `pay-123` name the same payment and fund once."""
    if not isinstance(ref, str):
        raise Invalid(f"a funding reference must be text, got {type(ref).__name__}")
    key = " ".join(ref.split()).upper()
    if not key:
        raise Invalid("a funding reference is required (it makes the deposit idempotent)")
    if len(key) > REF_LENGTH_MAX:
        raise Invalid(f"funding reference {ref[:20]!r}...: {len(key)} characters, at most "
                      f"{REF_LENGTH_MAX}")
    bad = next((c for c in key if not c.isprintable()), None)
    if bad is not None:
        raise Invalid(f"funding reference {ref!r}: character {bad!r} at {key.index(bad) + 1} "
                      "is not printable")
    return key


async def _fund(conn, who: str, account: str, amount_micros: int, ref: str) -> FundingResult:
    if isinstance(amount_micros, bool) or not isinstance(amount_micros, int) or amount_micros <= 0:
        raise Invalid(f"amount must be > 0 micro-units, got {amount_micros!r}")
    ref = normalize_ref(ref)
    transfer_id = uuid.uuid5(FUNDING_NAMESPACE, ref)
    async with conn.transaction():
        currency = await conn.fetchval("SELECT currency FROM ledger_account WHERE id = $1", account)
        # Only the account a deposit moves money from; the call accounts are the node's to make
        # (with its configured shards).
        await ledger.create_accounts(conn, [ledger.Account(FUNDING_SOURCE, "funding_clearing",
                                                           currency or "USD")])
        prior = await conn.fetchrow("SELECT account, amount, transfer_id FROM funding_credit "
                                    "WHERE ref = $1", ref)
        if prior is not None and (prior["account"], prior["amount"]) != (account, amount_micros):
            raise Invalid(f"reference {ref!r} was already used for "
                          f"{format_amount(prior['amount'])} to {prior['account']}")
        if prior is not None:
            # Funded before (its transfer and this row were written together). Its transfer id
            # is the stored one: a deposit stored before references were normalized was keyed
            # on the reference as it was typed (migration 0006_normalize_deposit_refs).
            return FundingResult(who, amount_micros, prior["transfer_id"], "exists")
        [result] = await ledger.submit(conn, [ledger.Transfer(
            id=transfer_id, kind=ledger.TransferKind.SINGLE, debit=FUNDING_SOURCE, credit=account,
            amount=amount_micros, code=ledger.TransferCode.DEPOSIT, ref=ref)])
        if not result.succeeded:
            raise Invalid(f"deposit refused by the ledger: {result.result.name.lower()}")
        await conn.execute("INSERT INTO funding_credit (ref, account, amount, transfer_id) "
                           "VALUES ($1, $2, $3, $4) ON CONFLICT (ref) DO NOTHING",
                           ref, account, amount_micros, transfer_id)
    return FundingResult(who, amount_micros, transfer_id, result.result.name.lower())


HOUSE_ACCOUNTS = (("revenue", "revenue"), ("tax_payable", "tax_payable"),
                  (FUNDING_SOURCE, "funding_clearing"), ("refunds_payable", "refunds_payable"),
                  ("call_shortfall", "call_shortfall"))


async def ensure_house_accounts(conn, currency: str = "USD", *,
                                shards: int = ledger.DEFAULT_SHARDS) -> None:
    """The operator's own accounts every call and deposit touches (idempotent). `shards`
    (config: ledger.revenue_shards) spreads revenue and tax over that many balance rows."""
    await ledger.create_accounts(conn, [ledger.Account(id_, kind, currency)
                                        for id_, kind in HOUSE_ACCOUNTS], default_shards=shards)


NAME_SECONDS_MAX = 5.0          # a spoken name, not a message


async def record_name(conn, inmate_id: str, wav: Path, data_dir: Path) -> Path:
    """Store the inmate's recorded name (any PCM WAV; made telephone-ready: 8 kHz mono, trimmed,
    levelled) under the data directory, and point the inmate at it."""
    from ivr import audio
    if not await conn.fetchval("SELECT true FROM inmate WHERE id = $1", inmate_id):
        raise NotFound(f"inmate {inmate_id!r} does not exist")
    try:
        clip = audio.for_telephone(audio.read_wav(wav))
    except (audio.BadWav, OSError) as e:
        raise Invalid(f"{wav}: {e}") from None
    seconds = len(clip.samples) / clip.rate
    if seconds < 0.2:
        raise Invalid(f"{wav}: no speech found (silent or too short)")
    if seconds > NAME_SECONDS_MAX:
        raise Invalid(f"{wav}: {seconds:.1f} s of speech; a recorded name is at most "
                      f"{NAME_SECONDS_MAX:.0f} s")
    target = Path(data_dir) / "names" / f"{inmate_id}.wav"
    target.parent.mkdir(parents=True, exist_ok=True)
    audio.write_wav(target, clip)
    await conn.execute("UPDATE inmate SET name_wav = $2 WHERE id = $1", inmate_id, str(target))
    return target
