"""The outbox: mail to holders, written in the transaction that caused it, sent later (or never).

A row is the message. `ics outbox` lists it; with `families.smtp_host` set, `send_pending` hands
unsent rows to that server (off by default: a node needs no mail server to run).
"""
from __future__ import annotations

import datetime as dt
import smtplib
import uuid
from dataclasses import dataclass
from email.message import EmailMessage

import asyncpg

__all__ = ["Mail", "enqueue", "messages", "send_pending", "SEND_BATCH_MAX"]

SEND_BATCH_MAX = 50
SEND_ATTEMPTS_MAX = 5


@dataclass(frozen=True)
class Mail:
    id: int
    created_at: dt.datetime
    recipient: str
    kind: str
    subject: str
    body: str
    sent_at: dt.datetime | None


async def enqueue(conn: asyncpg.Connection, *, at: dt.datetime, holder_id: uuid.UUID,
                  recipient: str, kind: str, subject: str,
                  body: str) -> int:
    seq: int = await conn.fetchval(
        "INSERT INTO family_outbox (created_at, holder_id, recipient, kind, subject, body) "
        "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        at, holder_id, recipient, kind, subject, body)
    return seq


async def messages(conn: asyncpg.Connection, *, recipient: str | None = None,
                   kind: str | None = None,
                   limit: int = 50) -> list[Mail]:
    rows = await conn.fetch(
        "SELECT id, created_at, recipient, kind, subject, body, sent_at FROM family_outbox "
        "WHERE ($1::text IS NULL OR recipient = $1) AND ($2::text IS NULL OR kind = $2) "
        "ORDER BY id DESC LIMIT $3", recipient, kind, limit)
    return [Mail(**dict(r)) for r in rows]


def _smtp_send(host: str, port: int, sender: str, mails: list[Mail]) -> dict[int, str | None]:
    out: dict[int, str | None] = {}
    with smtplib.SMTP(host, port, timeout=10) as s:
        for m in mails:
            try:
                # A header that cannot be written (a line break in an address) fails this mail
                # alone: one bad row must not stop the rest, round after round.
                msg = EmailMessage()
                msg["From"], msg["To"], msg["Subject"] = sender, m.recipient, m.subject
                msg.set_content(m.body)
                s.send_message(msg)
                out[m.id] = None
            except (smtplib.SMTPException, ValueError) as e:
                out[m.id] = str(e)[:200]
    return out


async def send_pending(conn: asyncpg.Connection, *, host: str, port: int, sender: str,
                       now: dt.datetime) -> int:
    """Send what is unsent through `host` (in a thread: smtplib blocks); returns how many went."""
    import asyncio
    if not host:
        return 0
    rows = await conn.fetch(
        "SELECT id, created_at, recipient, kind, subject, body, sent_at FROM family_outbox "
        "WHERE sent_at IS NULL AND attempts < $1 ORDER BY id LIMIT $2",
        SEND_ATTEMPTS_MAX, SEND_BATCH_MAX)
    mails = [Mail(**dict(r)) for r in rows]
    if not mails:
        return 0
    try:
        results = await asyncio.to_thread(_smtp_send, host, port, sender, mails)
    except (OSError, smtplib.SMTPException) as e:
        results = {m.id: f"server: {e}"[:200] for m in mails}
    sent = 0
    for mail_id, error in results.items():
        if error is None:
            sent += 1
        await conn.execute(
            "UPDATE family_outbox SET attempts = attempts + 1, last_error = $2, "
            "sent_at = CASE WHEN $2::text IS NULL THEN $3::timestamptz ELSE NULL END "
            "WHERE id = $1",
            mail_id, error, now)
    return sent
