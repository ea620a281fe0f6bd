"""Node configuration: a typed schema, loaded from TOML and validated before anything starts.

`config/default.toml` holds every key with its default. An operator's file (``--config`` or
``ICS_CONFIG``) overrides any subset; ``ICS_DATABASE_URL`` overrides ``database.url``. A key that
the schema does not know, or a value of the wrong type, is a `ConfigError` naming the file and key.

Each section is a frozen dataclass; adding a setting means adding a field here and a line to
`config/default.toml` (a test checks the two agree).
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from pathlib import Path
from typing import Any

__all__ = ["Config", "ConfigError", "load", "DEFAULT_PATH"]

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "config" / "default.toml"


class ConfigError(Exception):
    """A configuration file or value is unusable; the message names the file and the key."""


@dataclasses.dataclass(frozen=True)
class NodeSection:
    data_dir: str = "var"          # relative paths are resolved against the working directory
    log_level: str = "info"
    log_format: str = "console"    # "console" for people, "json" for machines


@dataclasses.dataclass(frozen=True)
class DatabaseSection:
    url: str = ""                  # empty: run the embedded PostgreSQL under data_dir
    pool_min: int = 2
    pool_max: int = 10
    embedded_fsync: bool = True    # tests turn this off; production keeps it on
    statement_timeout_ms: int = 10_000


@dataclasses.dataclass(frozen=True)
class LedgerSection:
    currency: str = "USD"
    hold_expiry_seconds_max: int = 86_400
    sweep_interval_seconds: float = 5.0
    revenue_shards: int = 16       # spreads credits to revenue/tax over N rows (no hot row)
    batch_size_max: int = 8_190


@dataclasses.dataclass(frozen=True)
class SwitchSection:
    workers: int = 2                       # media worker processes on this node
    sip_host: str = "127.0.0.1"            # where kiosks reach the front door and the workers
    frontdoor_port: int = 5060
    worker_sip_port_base: int = 5070       # worker i listens on base + i
    rtp_port_base: int = 20000             # worker i owns [base + i*n, base + (i+1)*n - 1]
    rtp_ports_per_worker: int = 100
    core_amp_host: str = "127.0.0.1"
    core_amp_port: int = 7070
    heartbeat_seconds: float = 5.0
    worker_silence_seconds: float = 15.0   # no Heartbeat for this long: presumed dead, restarted
    worker_hello_seconds_max: float = 30.0  # a started worker silent this long is restarted
    worker_stop_seconds: float = 5.0       # TERM on shutdown, KILL after this long
    worker_command: list[str] = dataclasses.field(default_factory=list)  # empty: -m switch.worker
    restart_backoff_seconds_min: float = 0.5
    restart_backoff_seconds_max: float = 30.0
    restarts_per_minute_max: int = 10      # per worker
    slot_reservation_seconds: float = 2.0  # a redirected INVITE holds a slot until heartbeats show it
    frontdoor_reservations_per_source_max: int = 2  # redirects pending per source: more get 486
    retry_after_seconds: int = 5           # in the front door's 503 when every worker is full
    frontdoor_rate_per_second: float = 50.0  # datagrams per source address, sustained
    frontdoor_burst: int = 100
    frontdoor_sources_max: int = 10_000    # sources the rate limiter remembers (least recent dropped)


@dataclasses.dataclass(frozen=True)
class CoreSection:
    http_host: str = "127.0.0.1"
    http_port: int = 8080                  # /metrics, /health (and the HTTP API)
    period_seconds: int = 60               # billing period: hold it, post it, hold the next
    warning_seconds: int = 60              # warn this long before the last grant ends
    hold_slack_seconds: int = 30           # a period's hold expires this long after the period
    min_call_seconds: int = 60             # a call that cannot pay this long is refused
    funding_order: list[str] = dataclasses.field(default_factory=lambda: ["prepaid", "debit"])
    refused_classes: list[str] = dataclasses.field(
        default_factory=lambda: ["emergency", "n11", "toll_free", "premium"])
    pin_secret_digits: int = 4
    pin_failures_max: int = 3
    pin_window_seconds: int = 900
    pin_kiosk_failures_max: int = 10       # failed guesses from one kiosk per throttle window
    pin_source_failures_max: int = 10      # ... from one source address (any kiosk, any inmate)
    pin_throttle_window_seconds: int = 300
    pin_session_seconds: int = 300         # a CheckPin's token authorizes one call this long
    pin_sessions_max: int = 10_000         # tokens held in memory (the oldest go first)
    setups_concurrent_max: int = 8         # call set-ups (CheckPin, AdmitKiosk) in progress at once
    setup_wait_seconds_max: float = 1.0    # a set-up (or PIN check) not started by then: kiosk 503
    pin_checks_concurrent_max: int = 2     # PIN KDF checks run at once (about the core's CPUs)
    pin_remembered_max: int = 100_000      # PINs verified once, then checked without the KDF
    kiosk_source_required: bool = False    # refuse kiosks without registered source networks
    call_silence_seconds: int = 30         # an open call not heard of this long is closed
    sweep_interval_seconds: float = 2.0
    group_commit_window_seconds: float = 0.003   # Continues within this carried out as one batch
    group_commit_size_max: int = 256       # calls in one batch; a full batch goes at once


@dataclasses.dataclass(frozen=True)
class WorkerSection:
    trunk_setup_seconds: float = 5.0       # no provisional answer from a trunk by then: the next
    trunk_answer_seconds: float = 45.0     # ringing this long: no_answer
    continue_lead_seconds: float = 5.0     # ask the core for more grant this long before it ends
    warning_seconds: int = 60              # warn this long before the last grant ends
    core_answer_seconds: float = 3.0       # a core answer slower than this counts as unreachable
    pin_header: str = "X-ICS-PIN"          # a trusted kiosk's PIN header (number in the R-URI)
    poll_idle_ms: int = 50                 # pjsua2 event polling with no call up
    poll_active_ms: int = 10               # ... and with calls up
    sip_log_level: int = 0                 # pjsip's own log verbosity (0-6) on the worker's stderr
    screen_source_rate: float = 40.0       # SIP requests/s one address may send a worker (floods)
    screen_source_burst: float = 80.0      # ... and at once
    screen_call_rate: float = 10.0         # new INVITEs/s the whole worker takes (2 call slots)
    edge_addresses: list[str] = dataclasses.field(default_factory=list)  # Kamailio IPs/CIDRs
    source_header: str = "X-ICS-Kiosk-Source"  # the kiosk's source, as the edge writes it


@dataclasses.dataclass(frozen=True)
class IvrSection:
    """The IVR's keys, limits and timeouts; checked by `ivr.settings.IvrSettings`."""
    languages: list[str] = dataclasses.field(default_factory=lambda: ["en", "es"])
    language_keys: list[str] = dataclasses.field(default_factory=lambda: ["1", "2"])
    language_default: str = "en"
    language_menu: bool = True
    pin_length: int = 0
    pin_length_min: int = 4
    pin_length_max: int = 16
    pin_attempts_max: int = 3
    number_attempts_max: int = 3
    number_digits_max: int = 18
    international_prefix: str = "011"
    international_digits_min: int = 7
    first_digit_timeout_seconds: float = 8.0
    digit_timeout_seconds: float = 5.0
    repeat_max: int = 2
    announce_time_limit: bool = True
    accept_key: str = "1"
    refuse_key: str = "2"
    block_key: str = "9"
    repeat_key: str = "0"
    language_switch_key: str = "*"
    block_scope: str = "facility"
    choice_timeout_seconds: float = 6.0
    passive_grace_seconds: float = 3.0


@dataclasses.dataclass(frozen=True)
class ApiSection:
    body_bytes_max: int = 1_048_576        # a larger request body is refused (413), not buffered
    adjustment_approval_micros: int = 100_000_000   # larger adjustments wait for a 2nd operator


@dataclasses.dataclass(frozen=True)
class FamiliesSection:
    """Account holders, their payments and refunds (families/); checked by families.settings."""
    default_profile: str = "fcc-2024"      # fees and refunds for numbers no facility claims yet
    automated_fee: str = "3.00"            # the operator's own fees; each is capped by the profile
    live_agent_fee: str = "5.95"
    paper_statement_fee: str = "2.00"
    deposit_max: str = "200.00"            # per transaction; never below 50.00
    deposit_daily_max: str = "500.00"      # per holder, per UTC day
    balance_max: str = "1000.00"           # per prepaid account, after a deposit
    login_failures_max: int = 5            # per email within the window; then refused unchecked
    login_source_failures_max: int = 20    # ... per source address
    login_window_seconds: int = 900
    session_seconds: int = 43_200
    token_seconds: int = 86_400            # email verification and password reset links
    low_balance: str = "5.00"              # a notice through the outbox below this
    webhook_secret: str = ""               # empty: a random key kept in the database
    webhook_window_seconds: int = 300      # signed webhooks older or newer than this are refused
    smtp_host: str = ""                    # empty: the outbox only (shown by `ics outbox`)
    smtp_port: int = 25
    mail_from: str = "no-reply@ics.invalid"


@dataclasses.dataclass(frozen=True)
class Config:
    node: NodeSection = NodeSection()
    database: DatabaseSection = DatabaseSection()
    ledger: LedgerSection = LedgerSection()
    switch: SwitchSection = SwitchSection()
    core: CoreSection = CoreSection()
    worker: WorkerSection = WorkerSection()
    ivr: IvrSection = IvrSection()
    api: ApiSection = ApiSection()
    families: FamiliesSection = FamiliesSection()
    source: tuple[str, ...] = ()   # files that were read, for error messages and `ics config show`

    @property
    def data_dir(self) -> Path:
        return Path(self.node.data_dir).expanduser().resolve()


_SECTIONS = {f.name: f.type for f in dataclasses.fields(Config) if f.name != "source"}


def _section_types() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {name: hints[name] for name in _SECTIONS}


def _check_value(where: str, key: str, expected: Any, value: Any) -> Any:
    # bool is an int in Python; a config that says `pool_max = true` is still a mistake.
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is int and isinstance(value, bool):
        raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
    origin = typing.get_origin(expected)
    if origin is list:
        (item,) = typing.get_args(expected)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key} must be a list, got {value!r}")
        return [_check_value(where, f"{key}[{i}]", item, v) for i, v in enumerate(value)]
    if not isinstance(value, expected):
        raise ConfigError(
            f"{where}: {key} must be {getattr(expected, '__name__', expected)}, got {value!r}")
    return value


def _merge(base: Config, data: dict[str, Any], where: str) -> Config:
    types = _section_types()
    changes: dict[str, Any] = {}
    for section, values in data.items():
        if section not in types:
            raise ConfigError(f"{where}: unknown section [{section}] "
                              f"(known: {', '.join(sorted(types))})")
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: [{section}] must be a table, got {values!r}")
        cls = types[section]
        hints = typing.get_type_hints(cls)
        fields = {}
        for key, value in values.items():
            if key not in hints:
                raise ConfigError(f"{where}: unknown key {section}.{key}")
            fields[key] = _check_value(where, f"{section}.{key}", hints[key], value)
        changes[section] = dataclasses.replace(getattr(base, section), **fields)
    return dataclasses.replace(base, **changes, source=base.source + (where,))


def _read(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


GROUP_COMMIT_WINDOW_SECONDS_MAX = 0.1   # a longer wait costs every Continue more than it saves
GROUP_COMMIT_SIZE_MAX = 2_000           # calls per batch (each up to 4 transfers in one ledger batch)


def _validate(cfg: Config) -> Config:
    from ivr.settings import IvrSettings, SettingsError   # pure; checks keys, limits, languages
    try:
        IvrSettings.from_section(cfg.ivr)
    except SettingsError as e:
        raise ConfigError(str(e)) from None
    db, ledger = cfg.database, cfg.ledger
    if not 1 <= db.pool_min <= db.pool_max:
        raise ConfigError("database.pool_min must be >= 1 and <= database.pool_max")
    if ledger.revenue_shards < 1:
        raise ConfigError("ledger.revenue_shards must be >= 1")
    if not 1 <= ledger.batch_size_max <= 100_000:
        raise ConfigError("ledger.batch_size_max must be between 1 and 100000")
    if len(ledger.currency) != 3 or not ledger.currency.isupper():
        raise ConfigError(f"ledger.currency must be an ISO 4217 code, got {ledger.currency!r}")
    core = cfg.core
    for name in ("period_seconds", "warning_seconds", "min_call_seconds", "pin_secret_digits",
                 "pin_failures_max", "pin_window_seconds", "call_silence_seconds",
                 "pin_checks_concurrent_max", "setups_concurrent_max",
                 "setup_wait_seconds_max"):
        if getattr(core, name) <= 0:
            raise ConfigError(f"core.{name} must be > 0, got {getattr(core, name)}")
    if core.pin_remembered_max < 0:
        raise ConfigError(f"core.pin_remembered_max must be >= 0 (0: off), got "
                          f"{core.pin_remembered_max}")
    if not 0 <= core.group_commit_window_seconds <= GROUP_COMMIT_WINDOW_SECONDS_MAX:
        raise ConfigError(f"core.group_commit_window_seconds must be between 0 (off) and "
                          f"{GROUP_COMMIT_WINDOW_SECONDS_MAX}, got "
                          f"{core.group_commit_window_seconds}")
    if not 1 <= core.group_commit_size_max <= GROUP_COMMIT_SIZE_MAX:
        raise ConfigError(f"core.group_commit_size_max must be between 1 and "
                          f"{GROUP_COMMIT_SIZE_MAX}, got {core.group_commit_size_max}")
    bad = [f for f in core.funding_order if f not in ("prepaid", "debit")]
    if bad or not core.funding_order:
        raise ConfigError(f"core.funding_order must list prepaid and/or debit, got {core.funding_order}")
    if cfg.api.body_bytes_max < 1024 or cfg.api.adjustment_approval_micros < 0:
        raise ConfigError("api.body_bytes_max must be >= 1024 and "
                          "api.adjustment_approval_micros >= 0")
    if cfg.node.log_level.lower() not in ("debug", "info", "warning", "error", "critical"):
        raise ConfigError("node.log_level must be debug, info, warning, error or critical, got "
                          f"{cfg.node.log_level!r}")
    from families.settings import FamilySettings, SettingsInvalid   # pure; checks amounts
    try:
        FamilySettings.from_section(cfg.families)
    except SettingsInvalid as e:
        raise ConfigError(str(e)) from None
    if cfg.node.log_format not in ("console", "json"):
        raise ConfigError(f"node.log_format must be 'console' or 'json', got {cfg.node.log_format!r}")
    return cfg


def load(path: str | os.PathLike[str] | None = None, *,
         overrides: dict[str, Any] | None = None,
         environ: typing.Mapping[str, str] = os.environ) -> Config:
    """Load the defaults, then ``path`` (or ``$ICS_CONFIG``), then the environment and overrides."""
    cfg = _merge(Config(), _read(DEFAULT_PATH), str(DEFAULT_PATH))
    path = path or environ.get("ICS_CONFIG") or None
    if path:
        cfg = _merge(cfg, _read(Path(path)), str(path))
    if environ.get("ICS_DATABASE_URL"):
        cfg = _merge(cfg, {"database": {"url": environ["ICS_DATABASE_URL"]}}, "ICS_DATABASE_URL")
    if environ.get("ICS_DATA_DIR"):
        cfg = _merge(cfg, {"node": {"data_dir": environ["ICS_DATA_DIR"]}}, "ICS_DATA_DIR")
    if overrides:
        cfg = _merge(cfg, overrides, "overrides")
    return _validate(cfg)
