"""Every `ics` command that changes something leaves an audit row (who: the OS user, or the
operator named with --operator beside it; what; when), in the same transaction as the change.
One row of the table per mutating command, run in-process against the real PostgreSQL."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import getpass
import io
from unittest import mock
import json
import uuid
import wave

import asyncpg
import pytest

from tests.web.cdr_rows import ensure_facilities

USER = f"cli:{getpass.getuser()}"
DECK = ("kind,line,destination,payment,days,start,weight,from_second,price,per_seconds,"
        "increment\nrate,day,interstate,any,all,00:00,0,0,0.05,60,60\n")
HOLD = str(uuid.uuid4())


@pytest.fixture(scope="module")
async def cli(api_dsn, db, tmp_path_factory):
    """Runs `ics ARGS...` in-process (on a thread: each command runs its own event loop) against
    the module's database; returns (exit code, stdout, stderr)."""
    root = tmp_path_factory.mktemp("cli-audit")
    config = root / "ics.toml"
    config.write_text(f'[database]\nurl = "{api_dsn}"\n[node]\ndata_dir = "{root}"\n'
                      '[api]\nadjustment_approval_micros = 50000000\n')
    (root / "deck.csv").write_text(DECK)
    lines = [{"op": "account", "id": "aud-fund", "kind": "funding_clearing"},
             {"op": "account", "id": "aud-fam", "kind": "prepaid_phone", "no_overdraft": True},
             {"op": "transfer", "id": str(uuid.uuid4()), "kind": "single", "debit": "aud-fund",
              "credit": "aud-fam", "amount": 5_000_000, "code": "deposit"}]
    (root / "batch.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    with wave.open(str(root / "name.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(b"\x00\x10" * 8000)
    await ensure_facilities(db)

    def run(*args: str) -> tuple[int, str, str]:
        from ops.cli import main
        out, err = io.StringIO(), io.StringIO()
        stdin = io.StringIO("2468\n")             # a PIN is read from stdin, never from argv
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                mock.patch("sys.stdin", stdin):
            try:
                code = main(["--config", str(config), *[a.replace("{root}", str(root))
                                                        for a in args]])
            except SystemExit as e:             # argparse refusing the command line
                code = e.code
        return code, out.getvalue(), err.getvalue()

    async def ics(*args: str) -> tuple[int, str, str]:
        return await asyncio.to_thread(run, *args)
    return ics


async def _expired_hold(db) -> None:
    """A hold already past its expiry, for `ledger sweep` to release."""
    import ledger
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    await ledger.create_accounts(db, [ledger.Account("aud-sweep",
                                                     ledger.AccountKind.FUNDING_CLEARING, "USD"),
                                      ledger.Account("aud-clr", ledger.AccountKind.CALL_CLEARING,
                                                     "USD")])
    [r] = await ledger.submit(db, [ledger.Transfer(uuid.UUID(HOLD), ledger.TransferKind.HOLD,
                                                   "aud-sweep", "aud-clr", 1_000, expires_in=60)],
                              now=past)
    assert r.succeeded


# (command line, the audit action it writes, its target). In order: later rows use what earlier
# rows made (the inmate, the account, the deposit).
COMMANDS = [
    (["facility", "add", "aud-f", "--name", "Audit", "--state", "NY", "--time-zone",
      "America/New_York", "--adp", "50", "--kind", "jail", "--profile", "fcc-2024"],
     "facility.add", "facility:aud-f"),
    (["facility", "update", "aud-f", "--max-call-minutes", "20"], "facility.update",
     "facility:aud-f"),
    (["kiosk", "add", "aud-k1", "--facility", "aud-f", "--source", "10.7.0.0/24"], "kiosk.add",
     "kiosk:aud-k1"),
    (["inmate", "add", "77001", "--name", "Ann Audit", "--facility", "aud-f"],
     "inmate.add", "inmate:77001"),
    (["inmate", "update", "77001", "--language", "es"], "inmate.update", "inmate:77001"),
    (["inmate", "unlock", "77001", "--by", "desk"], "inmate.unlock", "inmate:77001"),
    (["inmate", "record-name", "77001", "{root}/name.wav"], "inmate.record-name",
     "inmate:77001"),
    (["contact", "add", "77001", "+12125550177", "--name", "Bo"], "contact.add", "contact:77001"),
    (["contact", "approve", "77001", "+12125550177"], "contact.approve", "contact:77001"),
    (["contact", "deny", "77001", "+12125550177"], "contact.deny", "contact:77001"),
    (["contact", "remove", "77001", "+12125550177"], "contact.remove", "contact:77001"),
    (["block", "add", "+1900", "--prefix", "--reason", "premium"], "block.add", "block:+1900"),
    (["account", "add", "+13125550177", "--owner", "Cy"], "account.add",
     "account:+13125550177"),
    (["account", "fund", "+13125550177", "30.00", "--ref", "aud-pay-1"], "account.fund",
     "account:+13125550177"),
    (["route", "add", "+1312", "sip:{e164}@127.0.0.1:5090"], "route.add", "route:+1312"),
    (["schedule", "add", "aud-f", "mon-fri 08:00-22:00"], "schedule.add", "schedule:aud-f"),
    (["operator", "add", "aud-op", "--role", "billing"], "operator.add", "aud-op"),
    (["operator", "token", "aud-op"], "operator.token.issue", "aud-op"),
    (["operator", "revoke", "aud-op"], "operator.token.revoke", "aud-op"),
    (["money", "adjust", "+13125550177", "-1.25", "--reason", "goodwill", "--ref", "aud-adj-1"],
     "account.adjust", "prepaid:+13125550177"),
    (["money", "adjust", "+13125550177", "90.00", "--reason", "big", "--ref", "aud-adj-2"],
     "account.adjust", "prepaid:+13125550177"),
    (["--operator", "second", "money", "reject", "{adjustment}"], "adjustment.reject",
     "prepaid:+13125550177"),
    (["money", "approve", "{adjustment}"], "adjustment.approve", "prepaid:+13125550177"),
    (["money", "refund", "+13125550177", "--funding-ref", "aud-pay-1", "--amount", "2.00"],
     "account.refund", "prepaid:+13125550177"),
    (["rates", "import", "{root}/deck.csv", "--facility", "aud-f", "--accept-violations"],
     "tariff.import", "tariff:aud-f"),
    (["ledger", "submit", "{root}/batch.jsonl"], "ledger.submit", "file:{root}/batch.jsonl"),
    (["ledger", "sweep"], "ledger.sweep", "ledger:holds"),
    (["demo-data", "load"], "demo_data.load", "demo:config/demo"),
    (["ledger", "demo"], "ledger.demo", "account:demo-family-0001"),
]


async def _adjustment_by_another_operator(db, ref: str) -> str:
    """A large adjustment an API operator asked for, for the CLI user to decide."""
    from web.money import request_adjustment, resolve
    acct = await resolve(db, "+13125550177")
    adj = await request_adjustment(db, acct, amount=60_000_000, reason="api", ref=ref,
                                   actor="aud-api-op", via="http", approval_above=50_000_000)
    assert adj.state == "pending"
    return str(adj.id)


@pytest.mark.parametrize("argv,action,target", COMMANDS,
                         ids=[f"{i:02d}-{c[1]}" for i, c in enumerate(COMMANDS)])
async def test_every_mutating_command_writes_one_audit_row(cli, db, argv, action, target):
    if argv[:2] == ["ledger", "sweep"]:
        await _expired_hold(db)
    if "{adjustment}" in argv:
        pending = await _adjustment_by_another_operator(db, f"aud-{action}")
        argv = [pending if a == "{adjustment}" else a for a in argv]
    before = await db.fetchval("SELECT coalesce(max(seq), 0) FROM audit_event")
    code, out, err = await cli(*argv)
    assert code == 0, (out, err)
    rows = await db.fetch("SELECT * FROM audit_event WHERE seq > $1 AND action = $2",
                          before, action)
    # `ledger submit` writes one row per batch it commits: the file's accounts, then its transfers.
    assert len(rows) == (2 if action == "ledger.submit" else 1), [dict(r) for r in rows]
    row = rows[-1]
    root = target.split("{root}")[0]
    assert row["target"] == target if "{root}" not in target else row["target"].startswith(root)
    assert row["via"] == "cli"
    assert row["actor"] == (f"{USER} as second" if argv[0] == "--operator" else USER)
    assert abs(row["at"] - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(minutes=5)


async def test_the_audit_trail_lists_cli_changes_with_the_operator_named(cli, db):
    code, out, _ = await cli("--operator", "desk.one", "kiosk", "add", "aud-k2", "--facility",
                             "north")
    assert code == 0
    code, out, _ = await cli("audit", "--target", "kiosk:aud-k2", "--json")
    (event,) = [json.loads(line) for line in out.splitlines()]
    assert event["actor"] == f"{USER} as desk.one" and event["action"] == "kiosk.add"


@pytest.mark.parametrize("name", ["Desk One", "x" * 70, "", "-dash", "a\nb"])
async def test_an_operator_name_that_could_forge_a_row_is_refused_and_changes_nothing(cli, db,
                                                                                      name):
    before = await db.fetchval("SELECT coalesce(max(seq), 0) FROM audit_event")
    code, _, err = await cli("--operator", name, "kiosk", "add", "aud-k3", "--facility", "north")
    assert code == 2 and "--operator" in err
    assert await db.fetchval("SELECT count(*) FROM audit_event WHERE seq > $1", before) == 0
    assert await db.fetchval("SELECT true FROM kiosk WHERE id = 'aud-k3'") is None


async def test_a_self_declared_operator_name_is_not_a_second_operator(cli, db):
    code, out, err = await cli("money", "adjust", "+13125550177", "70.00", "--reason", "big",
                               "--ref", "aud-adj-self")
    assert code == 0 and "pending" in out, err
    pending = await db.fetchval("SELECT id FROM adjustment WHERE ref = 'aud-adj-self'")
    before = await db.fetchval("SELECT coalesce(max(seq), 0) FROM audit_event")
    code, _, err = await cli("--operator", "someone.else", "money", "approve", str(pending))
    assert code == 2 and "second operator" in err
    assert await db.fetchval("SELECT state FROM adjustment WHERE id = $1", pending) == "pending"
    assert await db.fetchval("SELECT count(*) FROM audit_event WHERE seq > $1", before) == 0


async def test_a_refused_command_leaves_no_audit_row(cli, db):
    before = await db.fetchval("SELECT coalesce(max(seq), 0) FROM audit_event")
    code, _, err = await cli("rates", "import", "{root}/batch.jsonl", "--facility", "aud-f")
    assert code != 0
    code, _, _ = await cli("money", "adjust", "+13125550177", "1e3", "--reason", "x", "--ref",
                           "aud-adj-3")
    assert code == 2
    assert await db.fetchval("SELECT count(*) FROM audit_event WHERE seq > $1", before) == 0


async def test_a_migration_run_is_audited_on_the_database_it_built(pg_template, cli):
    """`ics db migrate` on an empty database: the audit trail it creates holds its first row."""
    from tests.web.conftest import _with_database
    admin_dsn = pg_template
    name = f"ics_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        dsn = _with_database(admin_dsn, name)
        import os
        import subprocess
        import sys
        env = {k: v for k, v in os.environ.items() if not k.startswith("ICS_")}
        env["ICS_DATABASE_URL"] = dsn
        r = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "ops.cli", "db",
                                                     "migrate"], env=env, capture_output=True,
                                    text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        conn = await asyncpg.connect(dsn)
        try:
            (row,) = await conn.fetch("SELECT * FROM audit_event")
            assert (row["action"], row["actor"], row["via"]) == ("db.migrate", USER, "cli")
            assert any("ledger/" in m for m in json.loads(row["after"])["applied"])
            r = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "ops.cli", "db",
                                                         "migrate"], env=env,
                                        capture_output=True, text=True, timeout=120)
            assert r.returncode == 0 and "0 migration(s) applied" in r.stdout
            assert await conn.fetchval("SELECT count(*) FROM audit_event") == 1  # no change
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def test_the_embedded_servers_start_and_stop_are_audited_once_it_has_a_trail():
    """`ics db start|stop` on the embedded server: a fresh cluster has no audit trail until it
    is migrated (nothing to write to); after that each stop and start leaves its row."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path
    root = Path(tempfile.mkdtemp(prefix="ics-t-dbaudit-"))   # short: a Unix socket lives here
    config = root / "ics.toml"
    config.write_text(f'[node]\ndata_dir = "{root}"\n[database]\nembedded_fsync = false\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICS_")}

    def ics(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ops.cli", "--config", str(config), *args],
                              env=env, capture_output=True, text=True, timeout=120)

    def steps() -> str:
        for args in (("db", "start"), ("db", "migrate"), ("db", "stop"), ("db", "start")):
            r = ics(*args)
            assert r.returncode == 0, (args, r.stderr)
        return ics("db", "url").stdout.strip()
    try:
        dsn = await asyncio.to_thread(steps)
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch("SELECT action, actor, target FROM audit_event ORDER BY seq")
        finally:
            await conn.close()
        assert [(r["action"], r["actor"], r["target"]) for r in rows] == [
            ("db.migrate", USER, "db:schema"), ("db.stop", USER, "db:embedded"),
            ("db.start", USER, "db:embedded")]
    finally:
        await asyncio.to_thread(ics, "db", "stop")
        shutil.rmtree(root, ignore_errors=True)
