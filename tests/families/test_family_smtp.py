"""The outbox sent by SMTP to a real (small) SMTP server the test starts on a free local port:
mail goes out once and is marked sent; a recipient the server refuses, or an address with a line
break, fails that mail alone (attempts counted, error kept) and the rest go; an unreachable server
sends nothing and marks nothing sent."""
from __future__ import annotations

import asyncio
import email
import email.policy
import uuid
from dataclasses import dataclass, field

from families import outbox
from tests.families.conftest import T0

REFUSED = "nobody@refused.example"


@dataclass
class SmtpServer:
    """Enough of RFC 5321 for smtplib: EHLO, MAIL, RCPT, DATA, RSET, QUIT. It refuses RCPT to
    REFUSED (550) and keeps each message it accepts."""
    received: list[email.message.Message] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def say(line: str) -> None:
            writer.write(line.encode() + b"\r\n")
        say("220 test.smtp ready")
        sender, rcpts = "", []
        while line := (await reader.readline()).decode().rstrip("\r\n"):
            verb = line[:4].upper()
            if verb in ("EHLO", "HELO"):
                say("250 test.smtp")
            elif verb == "MAIL":
                sender, rcpts = line.split(":", 1)[1].strip(" <>"), []
                say("250 ok")
            elif verb == "RCPT":
                to = line.split(":", 1)[1].strip(" <>")
                if to == REFUSED:
                    say("550 no such mailbox")
                else:
                    rcpts.append(to)
                    say("250 ok")
            elif verb == "DATA":
                say("354 go on")
                data = b""
                while (chunk := await reader.readline()) != b".\r\n":
                    data += chunk
                self.received.append(email.message_from_bytes(data, policy=email.policy.default))
                self.envelopes.append((sender, rcpts))
                say("250 queued")
            elif verb == "RSET":
                sender, rcpts = "", []
                say("250 ok")
            elif verb == "QUIT":
                say("221 bye")
                await writer.drain()
                break
            else:
                say("502 not here")
            await writer.drain()
        writer.close()


async def _mail(conn, recipient: str, subject: str) -> int:
    return await outbox.enqueue(conn, at=T0, holder_id=None, recipient=recipient,
                                kind="verify", subject=subject, body=f"code for {recipient}")


async def test_the_outbox_goes_out_by_smtp_once_and_a_refused_mail_fails_alone(conn):
    smtp = SmtpServer()
    server = await asyncio.start_server(smtp.session, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        good = await _mail(conn, "ana@family.example", "Confirm your email")
        refused = await _mail(conn, REFUSED, "Confirm your email")
        broken = await _mail(conn, "eve@family.example\r\nBcc: all@family.example", "Hi")
        also = await _mail(conn, "bo@family.example", "Su código")
        sent = await outbox.send_pending(conn, host="127.0.0.1", port=port,
                                         sender="portal@ics.example", now=T0)
        assert sent == 2
        assert [m["To"] for m in smtp.received] == ["ana@family.example", "bo@family.example"]
        assert smtp.received[1]["Subject"] == "Su código"
        assert smtp.envelopes[0] == ("portal@ics.example", ["ana@family.example"])
        assert "code for ana@family.example" in smtp.received[0].get_content()
        rows = {r["id"]: r for r in await conn.fetch("SELECT * FROM family_outbox")}
        assert rows[good]["sent_at"] == T0 and rows[also]["sent_at"] == T0
        for bad in (refused, broken):
            assert rows[bad]["sent_at"] is None and rows[bad]["attempts"] == 1
            assert rows[bad]["last_error"]
        assert "550" in rows[refused]["last_error"]
        # Again: only the failed ones are tried; nothing is sent twice.
        assert await outbox.send_pending(conn, host="127.0.0.1", port=port,
                                         sender="portal@ics.example", now=T0) == 0
        assert len(smtp.received) == 2
        assert await conn.fetchval("SELECT attempts FROM family_outbox WHERE id = $1",
                                   refused) == 2
    finally:
        server.close()
        await server.wait_closed()


async def test_an_unreachable_server_sends_nothing_and_marks_nothing_sent(conn):
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()                 # the port is free again: connections refused
    mail = await _mail(conn, f"{uuid.uuid4().hex[:6]}@family.example", "Hello")
    assert await outbox.send_pending(conn, host="127.0.0.1", port=port,
                                     sender="portal@ics.example", now=T0) == 0
    row = await conn.fetchrow("SELECT * FROM family_outbox WHERE id = $1", mail)
    assert row["sent_at"] is None and row["attempts"] == 1
    assert row["last_error"].startswith("server:")
