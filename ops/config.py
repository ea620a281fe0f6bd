"""Node configuration: a typed schema, loaded from TOML and validated before anything starts.

Each section is a frozen dataclass whose fields carry the defaults: the one source of every
setting. The switch's sections (`[switch]`, `[core]`, `[worker]`) are `switch.settings`' classes
and `[ivr]` is `ivr.settings.IvrSettings`, used here as they are (nothing is copied field by
field); the node hands them down. `config/default.toml` lists every key with its default for
operators to read; it is not loaded (the classes are the defaults), and a test keeps the two
equal. An operator's file (``--config`` or ``ICS_CONFIG``) overrides any subset;
``ICS_DATABASE_URL`` overrides ``database.url``. A key that the schema does not know, or a value
of the wrong type, is a `ConfigError` naming the file and key.

Adding a setting means adding a field to its section's class and a line to
`config/default.toml`.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from pathlib import Path
from typing import Any

from ivr.settings import IvrSettings
from ops.errors import OpsError
from switch.settings import (CoreSettings, SettingsError, SwitchSettings, WorkerSettings,
                             check_value)

__all__ = ["Config", "ConfigError", "load", "DEFAULT_PATH"]

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "config" / "default.toml"


class ConfigError(OpsError):
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
    proof_caller_name: str = ""            # "This is <name> calling": empty for the default words
    proof_code_digits: int = 6             # the one-time code a proof call says
    proof_code_seconds: int = 600          # the code works this long after the request
    proof_attempts_max: int = 5            # wrong codes before a new call is needed
    proof_calls_per_number_per_day: int = 3    # to one number, whoever asks (24 h)
    proof_calls_per_holder_per_day: int = 5    # asked by one holder (24 h)
    proof_calls_per_node_per_hour: int = 120   # every proof call of the node: a toll-fraud fuse
    proof_gap_seconds: int = 60            # between two calls to one number
    proof_international: bool = False      # ring numbers outside the US


@dataclasses.dataclass(frozen=True)
class Config:
    node: NodeSection = NodeSection()
    database: DatabaseSection = DatabaseSection()
    ledger: LedgerSection = LedgerSection()
    switch: SwitchSettings = SwitchSettings()
    core: CoreSettings = CoreSettings()
    worker: WorkerSettings = WorkerSettings()
    ivr: IvrSettings = IvrSettings()
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
    try:
        return check_value(where, key, expected, value)
    except SettingsError as e:
        raise ConfigError(str(e)) from None


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
        try:
            changes[section] = dataclasses.replace(getattr(base, section), **fields)
        except ValueError as e:      # a section's own check (IvrSettings, SettingsError)
            raise ConfigError(f"{where}: {e}") from None
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
    cfg = Config()
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
