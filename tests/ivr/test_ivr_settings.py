import dataclasses

import pytest

from ivr.settings import IvrSettings, SettingsError
from ops.config import ConfigError, load


def test_the_node_config_carries_every_ivr_setting_with_the_same_defaults():
    section = load(environ={}).ivr
    assert IvrSettings.from_section(section) == IvrSettings()
    assert {f.name for f in dataclasses.fields(section)} == \
        {f.name for f in dataclasses.fields(IvrSettings)}


def test_an_operator_can_reassign_the_called_party_keys(tmp_path):
    f = tmp_path / "node.toml"
    f.write_text('[ivr]\naccept_key = "5"\nrefuse_key = "6"\nblock_key = ""\n')
    s = IvrSettings.from_section(load(f, environ={}).ivr)
    assert (s.accept_key, s.refuse_key, s.block_key) == ("5", "6", "")


def test_a_bad_ivr_setting_stops_the_node_at_start_up_naming_the_key():
    with pytest.raises(ConfigError, match=r"ivr.refuse_key"):
        load(overrides={"ivr": {"refuse_key": "12"}}, environ={})


@pytest.mark.parametrize("changes,key", [
    ({"accept_key": "2"}, "accept_key"),                      # same as refuse
    ({"repeat_key": "x"}, "repeat_key"),
    ({"accept_key": ""}, "accept_key"),                       # only block/switch may be off
    ({"languages": ("en", "fr")}, "languages"),
    ({"languages": ("en", "en")}, "languages"),
    ({"language_keys": ("1",)}, "language_keys"),
    ({"language_keys": ("1", "1")}, "language_keys"),
    ({"language_default": "es", "languages": ("en",), "language_keys": ("1",)},
     "language_default"),
    ({"block_scope": "world"}, "block_scope"),
    ({"pin_length": 3}, "pin_length"),
    ({"pin_length_min": 9, "pin_length_max": 8}, "pin_length_min"),
    ({"pin_attempts_max": 0}, "pin_attempts_max"),
    ({"repeat_max": -1}, "repeat_max"),
    ({"digit_timeout_seconds": 0}, "digit_timeout_seconds"),
    ({"international_prefix": "+"}, "international_prefix"),
    ({"number_digits_max": 9}, "number_digits_max"),
])
def test_unusable_settings_are_refused_by_name(changes, key):
    with pytest.raises(SettingsError, match=rf"ivr\.{key} ="):
        IvrSettings(**changes)
