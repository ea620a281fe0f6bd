"""The `ics` command line as an operator meets it: every command has help and says what it does;
every command that reads speaks JSON; every failure is one line on stderr and a documented exit
code, never a traceback; secrets never come from the command line."""
import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import uuid

import asyncpg
import pytest

from ops.cli import (EFFECTS, Context, ExitCode, UsageError, build_parser, is_leaf, main, run,
                     subcommands)


def ics(*args, env=None, input=None, timeout=120):
    full = {k: v for k, v in os.environ.items() if not k.startswith("ICS_")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "ops.cli", *args], env=full, input=input,
                          capture_output=True, text=True, timeout=timeout)


def one_line(r) -> str:
    """The failure's message: exactly one line on stderr, no traceback."""
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


PARSER = build_parser()
COMMANDS = subcommands(PARSER)
LEAVES = {path: p for path, p in COMMANDS.items() if is_leaf(p)}


# -- the shape of the command tree ---------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_command_and_action_has_help_and_lists_its_actions(path):
    p = COMMANDS[path]
    assert p._ics_help and p._ics_help.strip(), f"`ics {path}` has no help text"
    assert p.description, f"`ics {path} --help` says nothing about what it does"
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            listed = {a.dest for a in action._choices_actions}
            assert listed == set(action.choices), f"`ics {path} --help` hides " \
                f"{sorted(set(action.choices) - listed)}"


@pytest.mark.parametrize("path", sorted(LEAVES))
def test_every_command_declares_what_it_does_and_every_read_speaks_json(path):
    p = LEAVES[path]
    effect = p.get_default("effect")
    assert effect in EFFECTS, (f"`ics {path}` declares no effect: wrap its parser in reads(), "
                               "changes(), exports() or runs() (ops.cli)")
    options = {o for a in p._actions for o in a.option_strings}
    assert ("--json" in options) == (effect == "read"), f"`ics {path}`: --json iff it reads"
    for a in p._actions:
        if a.option_strings and a.dest not in ("help",) or not a.option_strings:
            assert a.help, f"`ics {path}`: {a.option_strings or a.dest} has no help"


def test_no_command_takes_a_pin_or_password_as_a_value():
    for path, p in LEAVES.items():
        for a in p._actions:
            if any(word in a.dest for word in ("pin", "password", "secret")):
                assert a.nargs == 0, f"`ics {path}` {a.option_strings}: a secret on the command line"


def test_version_is_printed():
    r = ics("--version")
    assert r.returncode == 0 and r.stdout.startswith("ics ") and r.stdout.split()[1][0].isdigit()


def test_the_exit_codes_are_documented_in_help_and_in_the_operations_guide():
    from pathlib import Path
    helptext = PARSER.format_help()
    guide = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    for code in ExitCode:
        assert f"  {int(code):>3}  " in helptext
        assert f"| {int(code)} |" in guide, f"docs/operations.md lacks exit code {int(code)}"


# -- every failure: one line, a documented code ----------------------------------------------------

def test_bad_arguments_are_one_line_naming_the_command():
    r = ics("facility", "add", "north")
    assert r.returncode == ExitCode.USAGE
    assert one_line(r).startswith("ics facility add: the following arguments are required")


@pytest.mark.parametrize("args,message", [
    (("audit", "--limit", "-1"), "--limit: must be >= 1, got -1"),
    (("route", "add", "+1", "sip:{e164}@h", "--capacity", "-5"), "--capacity: must be >= 0"),
    (("inmate", "add", "123", "--name", "A", "--facility", "f", "--calls-per-day", "-1"),
     "--calls-per-day: must be >= 0"),
    (("facility", "update", "north", "--max-call-minutes", "0"), "must be 1..1440"),
    (("inmate", "add", "123", "--name", "A", "--facility", "f", "--pin", "1234"),
     "unrecognized arguments: --pin 1234"),
])
def test_negative_limits_and_a_pin_on_the_command_line_are_refused(args, message, capsys):
    with pytest.raises(SystemExit) as exit_:            # argparse refuses before anything runs
        main(list(args))
    err = capsys.readouterr().err
    assert exit_.value.code == ExitCode.USAGE and err.count("\n") == 1 and message in err, err


def test_an_unreachable_database_is_one_line_and_exit_4():
    with socket.socket() as s:                  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = ics("kiosk", "list", env={"ICS_DATABASE_URL": f"postgresql://ics:secret@127.0.0.1:{port}/x"})
    assert r.returncode == ExitCode.DATABASE_UNREACHABLE
    line = one_line(r)
    assert f"cannot connect to 127.0.0.1:{port}/x" in line and "secret" not in line


def test_a_bad_config_file_is_one_line_and_exit_3(tmp_path):
    bad = tmp_path / "ics.toml"
    bad.write_text("[core]\nperiod_seconds = 'sixty'\n")
    r = ics("--config", str(bad), "facility", "list")
    assert r.returncode == ExitCode.CONFIG and "period_seconds" in one_line(r)


@pytest.fixture
async def empty_database(pg_server):
    admin_dsn, _ = pg_server
    name = f"ics_t_empty_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    from urllib.parse import urlsplit, urlunsplit
    yield urlunsplit(urlsplit(admin_dsn)._replace(path="/" + name))
    await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await admin.close()


async def test_an_unmigrated_database_is_one_line_exit_5_and_migrates_without_progress_noise(empty_database):
    for args in (("kiosk", "list"), ("ledger", "accounts"), ("facility", "add", "n", "--name", "N",
                 "--state", "CA", "--time-zone", "UTC", "--adp", "1", "--kind", "jail",
                 "--profile", "fcc-2024")):
        r = await asyncio.to_thread(ics, *args, env={"ICS_DATABASE_URL": empty_database})
        assert r.returncode == ExitCode.DATABASE_NOT_MIGRATED, r.stderr
        assert "run `ics db migrate`" in one_line(r)
    conn = await asyncpg.connect(empty_database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
    finally:
        await conn.close()
    # Migrating it shows no progress into a pipe (progress is for a person at a terminal).
    r = await asyncio.to_thread(ics, "db", "migrate", env={"ICS_DATABASE_URL": empty_database})
    assert r.returncode == 0 and r.stderr == "" and "migration(s) applied" in r.stdout


async def test_a_port_in_use_is_one_line_and_exit_6(pg_dsn, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "ics.toml"
        config.write_text(f'[node]\ndata_dir = "{tmp_path}"\n[core]\nhttp_host = "127.0.0.1"\n'
                          f'http_port = {port}\n[switch]\ncore_amp_port = 0\n')
        r = await asyncio.to_thread(ics, "--config", str(config), "serve", "--workers", "0",
                                    env={"ICS_DATABASE_URL": pg_dsn}, timeout=60)
    assert r.returncode == ExitCode.PORT_IN_USE, r.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr.splitlines()[-1]
    assert "Traceback" not in r.stderr


async def test_a_closed_pipe_ends_quietly_with_exit_141(pg_dsn):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICS_")}
    env["ICS_DATABASE_URL"] = pg_dsn
    # The reader has gone before the first byte is written, as with `ics ledger accounts | true`.
    proc = subprocess.Popen([sys.executable, "-m", "ops.cli", "ledger", "accounts"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = (await asyncio.to_thread(proc.stderr.read)).decode()
    assert await asyncio.to_thread(proc.wait, 60) == ExitCode.PIPE_CLOSED
    assert err == "", err


def test_an_internal_error_is_one_line_and_exit_70(capsys, monkeypatch):
    monkeypatch.delenv("ICS_TRACEBACK", raising=False)

    def broken(args, ctx):
        return {}["missing"]
    code = run(argparse.Namespace(func=broken), Context(None))
    err = capsys.readouterr().err
    assert code == ExitCode.INTERNAL and err.count("\n") == 1
    assert err.startswith("ics: internal error: KeyError") and "ICS_TRACEBACK=1" in err


def test_a_refusal_is_usage_and_a_multiline_message_stays_on_one_line(capsys):
    def refused(args, ctx):
        raise UsageError("first\nsecond")
    assert run(argparse.Namespace(func=refused), Context(None)) == ExitCode.USAGE
    assert capsys.readouterr().err == "ics: first second\n"


def test_a_domain_refusal_escaping_a_command_is_one_line_naming_the_field_and_exit_2(capsys):
    from families.errors import NotApproved, Refused
    from families.settings import parse_amount
    from switch.provisioning import directory

    def amount(args, ctx):
        parse_amount("0", field="amount")
    assert run(argparse.Namespace(func=amount), Context(None)) == ExitCode.USAGE
    assert capsys.readouterr().err == "ics: amount: '0' must be greater than 0\n"
    for refusal, line in ((Refused("number", "taken by\nanother holder"),
                           "ics: number: taken by another holder\n"),
                          (NotApproved("contact", "not approved"), "ics: contact: not approved\n"),
                          (directory.NotFound("no facility 'f-9'"), "ics: no facility 'f-9'\n")):
        def refused(args, ctx, e=refusal):
            raise e
        assert run(argparse.Namespace(func=refused), Context(None)) == ExitCode.USAGE
        assert capsys.readouterr().err == line


def test_a_ledger_refusing_a_family_payment_is_ours_not_the_users_exit_70(capsys, monkeypatch):
    from families.errors import FamilyLedgerRefused
    monkeypatch.delenv("ICS_TRACEBACK", raising=False)

    def booked(args, ctx):
        raise FamilyLedgerRefused("p-1", ["EXCEEDS_CREDITS"])
    assert run(argparse.Namespace(func=booked), Context(None)) == ExitCode.INTERNAL
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the ledger refused payment p-1: EXCEEDS_CREDITS" in err


# -- --json on every read ---------------------------------------------------------------------------

# One invocation per reading command, on the provisioned database below. A new reading command
# must be added here (the test fails until it is), so its JSON is proven to parse.
READS = {
    "audit": ["audit"],
    "cdr list": ["cdr", "list"],
    "db status": ["db", "status"],
    "db url": ["db", "url"],
    "facility list": ["facility", "list"],
    "facility show": ["facility", "show", "north"],
    "kiosk list": ["kiosk", "list"],
    "inmate list": ["inmate", "list"],
    "inmate show": ["inmate", "show", "10001"],
    "contact list": ["contact", "list", "10001"],
    "block list": ["block", "list"],
    "account show": ["account", "show", "(212) 555-0142"],
    "route list": ["route", "list"],
    "schedule list": ["schedule", "list"],
    "operator list": ["operator", "list"],
    "outbox": ["outbox"],
    "family refunds": ["family", "refunds"],
    "money adjustments": ["money", "adjustments"],
    "ledger accounts": ["ledger", "accounts"],
    "ledger balance": ["ledger", "balance", "+12125550142"],
    "ledger statement": ["ledger", "statement", "prepaid:+12125550142"],
    "ledger verify": ["ledger", "verify"],
    "rates versions": ["rates", "versions", "--facility", "north"],
    "rates check": ["rates", "check"],
    "rates quote": ["rates", "quote", "--facility", "north", "--to", "+12125550142",
                    "--seconds", "60"],
}

PROVISION = [
    ["facility", "add", "north", "--name", "North", "--state", "NY", "--time-zone",
     "America/New_York", "--adp", "300", "--kind", "jail", "--profile", "fcc-2024"],
    ["rates", "import", "config/demo/tariff.csv", "--facility", "north",
     "--effective", "2024-01-01T00:00:00Z"],
    ["schedule", "add", "north", "daily 07:00-23:00"],
    ["kiosk", "add", "k1", "--facility", "north", "--source", "10.0.0.0/24"],
    ["inmate", "add", "10001", "--name", "Al", "--facility", "north"],
    ["contact", "add", "10001", "+12125550142", "--approve"],
    ["block", "add", "+1900", "--prefix"],
    ["account", "add", "+12125550142", "--owner", "Bea"],
    ["account", "fund", "prepaid:+12125550142", "5.00", "--ref", "r1"],
    ["route", "add", "+", "sip:{e164}@127.0.0.1:5999"],
    ["operator", "add", "alice", "--role", "admin"],
    ["money", "adjust", "+12125550142", "-1.00", "--reason", "goodwill", "--ref", "a1"],
]


def test_the_json_table_covers_every_reading_command():
    assert set(READS) == {path for path, p in LEAVES.items() if p.get_default("effect") == "read"}
    from pathlib import Path
    guide = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    undocumented = [path for path in READS if f"`{path}`" not in guide]
    assert not undocumented, f"docs/operations.md gives no JSON shape for {undocumented}"


async def test_every_reading_command_prints_json_that_parses(pg_dsn, capsys, monkeypatch):
    monkeypatch.setenv("ICS_DATABASE_URL", pg_dsn)
    monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    monkeypatch.setattr(sys, "stdin", _Stdin("2468\n"))
    for argv in PROVISION:
        code = await asyncio.to_thread(main, argv)
        assert code == 0, (argv, capsys.readouterr().err)
    import asyncpg
    import datetime as dt
    from families.outbox import enqueue
    conn = await asyncpg.connect(pg_dsn)
    try:                                        # one mail for `ics outbox` to show
        await enqueue(conn, at=dt.datetime.now(dt.timezone.utc), holder_id=None,
                      recipient="bea@family.example", kind="verify", subject="Your code",
                      body="123456")
    finally:
        await conn.close()
    capsys.readouterr()
    for path, argv in sorted(READS.items()):
        code = await asyncio.to_thread(main, [*argv, "--json"])
        out = capsys.readouterr()
        assert code == 0, (path, out.err)
        text = out.out.strip()
        # no calls were made, and no refund waits for the provider: empty lists
        if path in ("cdr list", "family refunds") and not text:
            continue
        assert text, f"`ics {path} --json` printed nothing"
        try:
            values = [json.loads(text)]
        except json.JSONDecodeError:            # a list: one object per line
            values = [json.loads(line) for line in text.splitlines()]
        assert all(isinstance(v, dict) for v in values), path
    # money is integer micro-units beside its currency
    await asyncio.to_thread(main, ["account", "show", "+12125550142", "--json"])
    shown = json.loads(capsys.readouterr().out)
    assert shown == {"account": "prepaid:+12125550142", "number": "+12125550142", "owner": "Bea",
                     "currency": "USD", "posted": 4_000_000, "pending": 0, "available": 4_000_000}


class _Stdin:
    """Standard input that is not a terminal: the PIN arrives as one line."""

    def __init__(self, text: str) -> None:
        self.text = text

    def isatty(self) -> bool:
        return False

    def readline(self) -> str:
        return self.text


# -- secrets and progress --------------------------------------------------------------------------

async def test_the_pin_is_read_from_stdin_and_never_reaches_the_audit_trail(pg_dsn, conn,
                                                                           monkeypatch, capsys):
    monkeypatch.setenv("ICS_DATABASE_URL", pg_dsn)
    assert await asyncio.to_thread(main, PROVISION[0]) == 0
    monkeypatch.setattr(sys, "stdin", _Stdin(""))
    add = ["inmate", "add", "10001", "--name", "Al", "--facility", "north"]
    assert await asyncio.to_thread(main, add) == ExitCode.USAGE
    assert "expected on standard input" in capsys.readouterr().err
    r = await asyncio.to_thread(ics, *add, env={"ICS_DATABASE_URL": pg_dsn}, input="8642\n")
    assert r.returncode == 0, r.stderr
    monkeypatch.setattr(sys, "stdin", _Stdin("9753\n"))
    assert await asyncio.to_thread(main, ["inmate", "update", "10001", "--pin"]) == 0
    from switch.rules.pin import check_secret
    assert check_secret("9753", bytes(await conn.fetchval("SELECT pin_hash FROM inmate")))
    trail = " ".join(str(r["after"]) for r in await conn.fetch("SELECT after FROM audit_event"))
    assert '"pin": true' in trail and "8642" not in trail and "9753" not in trail


def test_a_state_that_is_not_a_us_state_is_refused():
    from rating.facility import Facility, FacilityError
    with pytest.raises(FacilityError, match="not a US state"):
        Facility(id="x", name="X", state="ZZ", time_zone="UTC", adp=1, kind="jail",
                 profile="fcc-2024")
    for state in ("CA", "DC", "PR", "GU"):
        assert Facility(id="x", name="X", state=state, time_zone="UTC", adp=1, kind="jail",
                        profile="fcc-2024").state == state


def _run_with_stderr_on_a_terminal(args, env) -> tuple[int, str]:
    import pty
    full = {k: v for k, v in os.environ.items() if not k.startswith("ICS_")}
    full.update(env)
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "ops.cli", *args], env=full,
                            stdout=subprocess.DEVNULL, stderr=terminal)
    os.close(terminal)
    seen = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:                          # the terminal closed: the process is done
            break
        if not chunk:
            break
        seen += chunk
    os.close(controller)
    return proc.wait(60), seen.decode(errors="replace")


async def test_progress_is_shown_when_stderr_is_a_terminal(empty_database):
    code, seen = await asyncio.to_thread(_run_with_stderr_on_a_terminal, ["db", "migrate"],
                                         {"ICS_DATABASE_URL": empty_database})
    assert code == 0 and "applying ledger/0001_ledger.sql" in seen, seen
