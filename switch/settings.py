"""The switch's settings: the `[switch]`, `[core]` and `[worker]` sections, defaults and meaning.

These dataclasses are the one source of every switch setting's name, type and default. `ops.config`
uses them as its sections (it reads TOML into them, nothing is copied field by field);
`config/default.toml` lists the same defaults for operators to read, and a test keeps the file
equal to these classes. The switch never reads a config file itself: `ops.node` loads the node's
config and hands each part down (the core its `CoreSettings`, the supervisor its `SwitchSettings`
and a `WorkerProcessSettings` for the workers it starts, which receive it on their command line).
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.settings import IvrSettings
from switch.errors import SwitchError

__all__ = ["SettingsError", "SwitchSettings", "CoreSettings", "WorkerSettings",
           "WorkerProcessSettings"]


class SettingsError(SwitchError, ValueError):
    """A setting's value is unusable; the message names the key (`section.key`) and the value."""


@dataclass(frozen=True)
class SwitchSettings:
    """`[switch]`: the node's worker processes, their ports, and the SIP front door."""
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
    worker_command: list[str] = field(default_factory=list)  # empty: this Python, -m switch.worker
    restart_backoff_seconds_min: float = 0.5
    restart_backoff_seconds_max: float = 30.0
    restarts_per_minute_max: int = 10      # per worker
    slot_reservation_seconds: float = 2.0  # a redirect holds a slot till heartbeats show it
    frontdoor_reservations_per_source_max: int = 2  # redirects pending per source: more get 486
    retry_after_seconds: int = 5           # in the front door's 503 when every worker is full
    frontdoor_rate_per_second: float = 50.0  # datagrams per source address, sustained
    frontdoor_burst: int = 100
    frontdoor_sources_max: int = 10_000    # sources the rate limiter keeps (least recent dropped)


@dataclass(frozen=True)
class CoreSettings:
    """`[core]`: the call-control core's billing periods, PIN rules, sweeps and group commit
    (its HTTP listener too, which `ops.node` opens for it)."""
    http_host: str = "127.0.0.1"
    http_port: int = 8080                  # /metrics, /health (and the HTTP API)
    period_seconds: int = 60               # billing period: hold it, post it, hold the next
    warning_seconds: int = 60              # warn this long before the last grant ends
    hold_slack_seconds: int = 30           # a period's hold expires this long after the period
    min_call_seconds: int = 60             # a call that cannot pay this long is refused
    funding_order: tuple[str, ...] = ("prepaid", "debit")   # first source that can pay is used
    refused_classes: frozenset[str] = frozenset({"emergency", "n11", "toll_free", "premium"})
    pin_secret_digits: int = 4             # the inmate keys their number, then this many digits
    pin_failures_max: int = 3              # failures within pin_window_seconds lock the PIN
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
    group_commit_lanes: int = 4            # batches running at once, each on its own shards


@dataclass(frozen=True)
class WorkerSettings:
    """`[worker]`: a media worker's trunk timers, grant lead, polling and SIP screening."""
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
    edge_addresses: list[str] = field(default_factory=list)  # Kamailio IPs/CIDRs
    source_header: str = "X-ICS-Kiosk-Source"  # the kiosk's source, as the edge writes it


@dataclass(frozen=True)
class WorkerProcessSettings:
    """Everything a media worker process is told by the supervisor that starts it.

    The supervisor passes it as JSON on the worker's command line (`--settings`), so a worker
    reads no config file and imports nothing above the switch; `from_json` refuses a document
    that does not fit, naming the key."""
    switch: SwitchSettings = SwitchSettings()
    worker: WorkerSettings = WorkerSettings()
    ivr: IvrSettings = IvrSettings()
    log_level: str = "info"
    data_dir_path: str = "var"             # recordings and generated prompts

    @property
    def data_dir(self) -> Path:
        return Path(self.data_dir_path).expanduser().resolve()

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), default=sorted, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> WorkerProcessSettings:
        try:
            data = json.loads(text)
        except ValueError as e:
            raise SettingsError(f"worker settings: not JSON: {e}") from None
        if not isinstance(data, dict):
            raise SettingsError("worker settings: must be a JSON object")
        built: WorkerProcessSettings = build(cls, data, "worker settings")
        return built


def build(cls: type[Any], data: dict[str, Any], where: str) -> Any:
    """An instance of the settings dataclass `cls` from plain values (TOML or JSON): unknown keys
    and wrong types are refused naming `where` and the key; lists become the tuples or frozensets
    a field declares; nested settings dataclasses are built the same way."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in hints or key not in {f.name for f in dataclasses.fields(cls)}:
            raise SettingsError(f"{where}: unknown key {key}")
        values[key] = check_value(where, key, hints[key], value)
    try:
        return cls(**values)
    except SettingsError:
        raise
    except ValueError as e:          # a settings class's own check (e.g. IvrSettings)
        raise SettingsError(f"{where}: {e}") from None


def check_value(where: str, key: str, expected: Any, value: Any) -> Any:
    """`value` as the type `expected`, or SettingsError naming `where` and `key`."""
    if dataclasses.is_dataclass(expected):
        if not isinstance(value, dict):
            raise SettingsError(f"{where}: {key} must be a table, got {value!r}")
        return build(typing.cast(type[Any], expected), value, f"{where}: {key}")
    # bool is an int in Python; a config that says `pool_max = true` is still a mistake.
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is int and isinstance(value, bool):
        raise SettingsError(f"{where}: {key} must be an integer, got {value!r}")
    origin = typing.get_origin(expected)
    if origin in (list, tuple, frozenset):
        item = typing.get_args(expected)[0]
        if not isinstance(value, list | tuple):
            raise SettingsError(f"{where}: {key} must be a list, got {value!r}")
        items = [check_value(where, f"{key}[{i}]", item, v) for i, v in enumerate(value)]
        return origin(items)
    if not isinstance(value, expected):
        raise SettingsError(
            f"{where}: {key} must be {getattr(expected, '__name__', expected)}, got {value!r}")
    return value
