"""Node configuration: a typed schema, loaded from TOML and validated before anything starts.

Each section is a frozen dataclass whose fields carry the defaults: the one source of every
setting. The switch's sections (`[switch]`, `[core]`, `[worker]`) are `switch.settings`' classes,
`[ivr]` is `ivr.settings.IvrSettings` and `[api]` is `web.settings.ApiSettings`, used here as
they are (nothing is copied field by field); the node hands them down. `[families]` is written
as an operator writes it (amounts as text); its defaults are the families' settings classes'. `config/default.toml` lists every key with its default for
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

from families.proof_rules import ProofRules
from families.settings import FamilySettings, SettingsInvalid
from ivr.settings import IvrSettings
from ops.errors import OpsError
from switch.settings import (CoreSettings, SettingsError, SwitchSettings, WorkerSettings,
                             check_value)
from web.settings import ApiSettings

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


_FAMILY, _PROOF = FamilySettings(), ProofRules()


@dataclasses.dataclass(frozen=True)
class FamiliesSection:
    """`[families]`: account holders, their payments, refunds and proof calls (families/).

    The defaults are families.settings.FamilySettings' (amounts written as text, the way an
    operator writes them) and families.proof_rules.ProofRules' (the proof_* keys); load() checks
    the section by building both."""
    default_profile: str = _FAMILY.default_profile   # fees and refunds where no facility claims
    automated_fee: str = _FAMILY.as_text("automated_fee")   # the operator's own fees; each
    live_agent_fee: str = _FAMILY.as_text("live_agent_fee")  # ... capped by the profile
    paper_statement_fee: str = _FAMILY.as_text("paper_statement_fee")
    deposit_max: str = _FAMILY.as_text("deposit_max")    # per transaction; never below 50.00
    deposit_daily_max: str = _FAMILY.as_text("deposit_daily_max")    # per holder, per day (facility time)
    balance_max: str = _FAMILY.as_text("balance_max")    # per prepaid account, after a deposit
    login_failures_max: int = _FAMILY.login_failures_max    # per email within the window
    login_source_failures_max: int = _FAMILY.login_source_failures_max    # per source address
    login_window_seconds: int = _FAMILY.login_window_seconds
    session_seconds: int = _FAMILY.session_seconds
    token_seconds: int = _FAMILY.token_seconds     # email verification and password reset links
    low_balance: str = _FAMILY.as_text("low_balance")    # a notice through the outbox below this
    webhook_secret: str = _FAMILY.webhook_secret    # empty: a random key kept in the database
    webhook_window_seconds: int = _FAMILY.webhook_window_seconds
    smtp_host: str = _FAMILY.smtp_host             # empty: the outbox only (`ics outbox`)
    smtp_port: int = _FAMILY.smtp_port
    mail_from: str = _FAMILY.mail_from
    proof_caller_name: str = ""     # "This is <name> calling": empty for the default words
    proof_code_digits: int = _PROOF.code_digits    # the one-time code a proof call says
    proof_code_seconds: int = _PROOF.code_seconds
    proof_attempts_max: int = _PROOF.attempts_max
    proof_calls_per_number_per_day: int = _PROOF.calls_per_number_per_day
    proof_calls_per_holder_per_day: int = _PROOF.calls_per_holder_per_day
    proof_calls_per_node_per_hour: int = _PROOF.calls_per_node_per_hour
    proof_gap_seconds: int = _PROOF.gap_seconds
    proof_international: bool = _PROOF.international
    proof_prompt_seconds: int = _PROOF.prompt_seconds   # a proof call's words, both readings


@dataclasses.dataclass(frozen=True)
class Config:
    node: NodeSection = NodeSection()
    database: DatabaseSection = DatabaseSection()
    ledger: LedgerSection = LedgerSection()
    switch: SwitchSettings = SwitchSettings()
    core: CoreSettings = CoreSettings()
    worker: WorkerSettings = WorkerSettings()
    ivr: IvrSettings = IvrSettings()
    api: ApiSettings = ApiSettings()
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
GROUP_COMMIT_LANES_MAX = 64             # batches at once: each holds a pooled connection


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
    if not 1 <= core.group_commit_lanes <= GROUP_COMMIT_LANES_MAX:
        raise ConfigError(f"core.group_commit_lanes must be between 1 and "
                          f"{GROUP_COMMIT_LANES_MAX}, got {core.group_commit_lanes}")
    bad = [f for f in core.funding_order if f not in ("prepaid", "debit")]
    if bad or not core.funding_order:
        raise ConfigError(f"core.funding_order must list prepaid and/or debit, got {core.funding_order}")
    if cfg.api.body_bytes_max < 1024 or cfg.api.adjustment_approval_micros < 0:
        raise ConfigError("api.body_bytes_max must be >= 1024 and "
                          "api.adjustment_approval_micros >= 0")
    if cfg.node.log_level.lower() not in ("debug", "info", "warning", "error", "critical"):
        raise ConfigError("node.log_level must be debug, info, warning, error or critical, got "
                          f"{cfg.node.log_level!r}")
    try:
        FamilySettings.from_section(cfg.families)
        ProofRules.from_section(cfg.families)
    except (SettingsInvalid, ValueError) as e:
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
