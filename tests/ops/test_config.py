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
    from ops.node import core_settings
    cfg = load(overrides={"core": {"group_commit_window_seconds": 0.01,
                                   "group_commit_size_max": 64}}, environ={})
    s = core_settings(cfg)
    assert (s.group_commit_window_seconds, s.group_commit_size_max) == (0.01, 64)
    assert core_settings(load(overrides={"core": {"group_commit_window_seconds": 0}},
                              environ={})).group_commit_window_seconds == 0    # off
    for key, value in (("group_commit_window_seconds", -0.001),
                       ("group_commit_window_seconds", 5), ("group_commit_size_max", 0)):
        with pytest.raises(ConfigError, match=f"core.{key}"):
            load(overrides={"core": {key: value}}, environ={})
