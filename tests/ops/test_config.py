import dataclasses
import tomllib
import typing

import pytest

from ops.config import DEFAULT_PATH, Config, ConfigError, load


def test_default_file_lists_every_setting_of_the_schema():
    data = tomllib.loads(DEFAULT_PATH.read_text())
    hints = typing.get_type_hints(Config)
    for section in (f.name for f in dataclasses.fields(Config) if f.name != "source"):
        fields = {f.name for f in dataclasses.fields(hints[section])}
        assert set(data[section]) == fields, section


def test_defaults_load_and_match_the_schema_defaults():
    cfg = load(environ={})
    assert cfg.node == Config().node and cfg.ledger == Config().ledger


def test_operator_file_overrides_a_subset(tmp_path):
    f = tmp_path / "node.toml"
    f.write_text('[database]\npool_max = 20\n')
    cfg = load(f, environ={})
    assert cfg.database.pool_max == 20 and cfg.database.pool_min == 2
    assert str(f) in cfg.source


def test_unknown_key_is_an_error_naming_file_and_key(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('[database]\npool_maxx = 20\n')
    with pytest.raises(ConfigError, match=r"bad.toml: unknown key database.pool_maxx"):
        load(f, environ={})


def test_unknown_section_is_an_error(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('[datab]\nurl = "x"\n')
    with pytest.raises(ConfigError, match=r"unknown section \[datab\]"):
        load(f, environ={})


@pytest.mark.parametrize("text,key", [
    ('[database]\npool_max = "20"\n', "database.pool_max"),
    ('[database]\npool_max = true\n', "database.pool_max"),
    ('[ledger]\nsweep_interval_seconds = "5"\n', "ledger.sweep_interval_seconds"),
    ('[node]\ndata_dir = 3\n', "node.data_dir"),
])
def test_wrong_type_is_an_error_naming_the_key(tmp_path, text, key):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load(f, environ={})


def test_invalid_toml_names_the_file(tmp_path):
    f = tmp_path / "broken.toml"
    f.write_text('[database\n')
    with pytest.raises(ConfigError, match="broken.toml: not valid TOML"):
        load(f, environ={})


def test_environment_selects_config_file_and_database(tmp_path):
    f = tmp_path / "n.toml"
    f.write_text('[ledger]\nrevenue_shards = 4\n')
    cfg = load(environ={"ICS_CONFIG": str(f), "ICS_DATABASE_URL": "postgresql://h/db"})
    assert cfg.ledger.revenue_shards == 4 and cfg.database.url == "postgresql://h/db"


def test_cross_field_rules_are_checked():
    with pytest.raises(ConfigError, match="pool_min"):
        load(overrides={"database": {"pool_min": 5, "pool_max": 2}}, environ={})
    with pytest.raises(ConfigError, match="currency"):
        load(overrides={"ledger": {"currency": "usd"}}, environ={})


def test_the_group_commit_window_is_configured_and_bounded():
    cfg = load(overrides={"core": {"group_commit_window_seconds": 0.01,
                                   "group_commit_size_max": 64, "group_commit_lanes": 2}},
               environ={})
    s = cfg.core            # the core's own settings, handed to it as they are
    assert (s.group_commit_window_seconds, s.group_commit_size_max,
            s.group_commit_lanes) == (0.01, 64, 2)
    assert load(overrides={"core": {"group_commit_window_seconds": 0}},
                environ={}).core.group_commit_window_seconds == 0    # off
    for key, value in (("group_commit_window_seconds", -0.001),
                       ("group_commit_window_seconds", 5), ("group_commit_size_max", 0),
                       ("group_commit_lanes", 0), ("group_commit_lanes", 65)):
        with pytest.raises(ConfigError, match=f"core.{key}"):
            load(overrides={"core": {key: value}}, environ={})


def test_default_file_says_what_the_settings_classes_default_to():
    """The classes are the one source of defaults (load() does not read config/default.toml);
    the file shows operators the same values, key by key."""
    from switch.settings import check_value
    data = tomllib.loads(DEFAULT_PATH.read_text())
    defaults, hints = Config(), typing.get_type_hints(Config)
    differ = []
    for section, values in data.items():
        kinds = typing.get_type_hints(hints[section])
        for key, value in values.items():
            want = getattr(getattr(defaults, section), key)
            if check_value("default.toml", key, kinds[key], value) != want:
                differ.append(f"{section}.{key}: file {value!r}, class {want!r}")
    assert not differ, differ


def test_defaults_do_not_come_from_the_default_file(tmp_path, monkeypatch):
    from ops import config
    monkeypatch.setattr(config, "DEFAULT_PATH", tmp_path / "absent.toml")
    assert load(environ={}) == Config()


def test_the_switch_sections_are_the_switch_settings_handed_down():
    from ivr.settings import IvrSettings
    from switch.settings import CoreSettings, SwitchSettings, WorkerSettings
    cfg = load(overrides={"core": {"funding_order": ["debit"], "refused_classes": ["n11"]},
                          "ivr": {"languages": ["en"], "language_keys": ["1"]}}, environ={})
    assert isinstance(cfg.core, CoreSettings) and isinstance(cfg.switch, SwitchSettings)
    assert isinstance(cfg.worker, WorkerSettings) and isinstance(cfg.ivr, IvrSettings)
    assert cfg.core.funding_order == ("debit",) and cfg.core.refused_classes == frozenset({"n11"})
    assert cfg.ivr.languages == ("en",)


def test_a_section_check_names_the_file_and_key(tmp_path):
    f = tmp_path / "ivr.toml"
    f.write_text('[ivr]\nlanguages = ["en", "en"]\n')
    with pytest.raises(ConfigError, match=r"ivr.toml: ivr.languages"):
        load(f, environ={})


def test_a_worker_is_handed_its_settings_as_json_and_refuses_what_does_not_fit():
    from ops.node import worker_process_settings
    from switch.settings import SettingsError, WorkerProcessSettings
    cfg = load(overrides={"worker": {"pin_header": "X-Pin", "edge_addresses": ["10.0.0.1"]},
                          "ivr": {"languages": ["es"], "language_keys": ["1"],
                                  "language_default": "es"},
                          "node": {"log_level": "debug"}}, environ={})
    told = worker_process_settings(cfg)
    back = WorkerProcessSettings.from_json(told.to_json())
    assert back == told and back.worker.pin_header == "X-Pin" and back.ivr.languages == ("es",)
    assert back.log_level == "debug" and back.data_dir == cfg.data_dir
    for text, where in (('{"worker": {"pin_headr": "x"}}', "worker: unknown key pin_headr"),
                        ('{"switch": {"workers": "2"}}', "workers must be int"),
                        ('{"ivr": {"languages": ["xx"]}}', "ivr.languages"),
                        ('[1]', "must be a JSON object"), ('{', "not JSON")):
        with pytest.raises(SettingsError, match=where):
            WorkerProcessSettings.from_json(text)


def test_a_worker_reads_the_settings_handed_down_without_copies():
    """The worker's call and screen settings come from `[worker]` and `[ivr]` as handed down: a
    value set in the file is the value a call and the screen use."""
    from ops.node import worker_process_settings
    from switch.settings import WorkerProcessSettings
    from switch.worker.service import WorkerOptions
    cfg = load(overrides={"worker": {"trunk_setup_seconds": 7.0, "pin_header": "X-Pin",
                                     "screen_source_rate": 3.0, "screen_call_rate": 2.0,
                                     "poll_idle_ms": 30, "edge_addresses": ["10.0.0.1"]},
                          "ivr": {"languages": ["es"], "language_keys": ["1"],
                                  "language_default": "es"}}, environ={})
    told = WorkerProcessSettings.from_json(worker_process_settings(cfg).to_json())
    o = WorkerOptions("w1", 5070, 20000, 20100, "tcp:127.0.0.1:1", told.data_dir, settings=told)
    assert o.call.worker.trunk_setup_seconds == 7.0 and o.call.worker.pin_header == "X-Pin"
    assert o.call.ivr.languages == ("es",) and o.call.edge.is_edge("10.0.0.1")
    assert not o.call.edge.is_edge("10.0.0.2")
    assert (o.screen.source_rate, o.screen.call_rate, o.screen.call_burst) == (3.0, 2.0, 2.0)
    assert o.worker.poll_idle_ms == 30 and o.host == cfg.switch.sip_host


def test_the_families_section_builds_the_families_settings_with_their_own_defaults():
    """[families]' defaults are FamilySettings' and ProofRules' (amounts round-trip as text)."""
    from families.proof_rules import ProofRules
    from families.settings import FamilySettings
    section = Config().families
    assert FamilySettings.from_section(section) == FamilySettings()
    assert ProofRules.from_section(section) == ProofRules()
    assert section.live_agent_fee == "5.95"


@pytest.mark.parametrize("text, key", [
    ("[families]\nproof_code_digits = 3\n", "families.proof_code_digits"),
    ("[families]\nlow_balance = \"1.005\"\n", "families.low_balance"),
])
def test_a_families_setting_that_does_not_fit_is_refused_at_load(tmp_path, text, key):
    f = tmp_path / "families.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=key):
        load(f, environ={})
