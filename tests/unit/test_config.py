"""Config: frozen, validated, read from REMOTEOBJ_<FIELD> variables."""

from __future__ import annotations

import dataclasses

import pytest

from remoteobj.config import Config


def test_defaults_are_the_documented_limits() -> None:
    c = Config()
    assert c.max_message_size == 4 * 1024 * 1024
    assert c.commtimeout == 30.0
    assert c.first_frame_timeout == c.frame_timeout == 10.0
    assert c.max_connections == 1024
    assert c.max_batch == 1000
    assert "marshal" not in c.accepted_serializers
    assert c.serializer == "serpent"


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().commtimeout = 1  # type: ignore[misc]


def test_env_variables_set_fields_by_type() -> None:
    c = Config.from_env(
        {
            "REMOTEOBJ_COMMTIMEOUT": "2.5",
            "REMOTEOBJ_NS_PORT": "9999",
            "REMOTEOBJ_COMPRESSION": "on",
            "REMOTEOBJ_ACCEPTED_SERIALIZERS": "json, serpent",
            "REMOTEOBJ_KEEPALIVE": "5,6,7",
            "REMOTEOBJ_NS_BCHOST": "none",
            "PATH": "/bin",
        }
    )
    assert c.commtimeout == 2.5
    assert c.ns_port == 9999
    assert c.compression is True
    assert c.accepted_serializers == {"json", "serpent"}
    assert c.keepalive == (5, 6, 7)
    assert c.ns_bchost is None


def test_overrides_win_over_the_environment() -> None:
    assert Config.from_env({"REMOTEOBJ_HOST": "a"}, host="b").host == "b"


def test_unknown_variable_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="REMOTEOBJ_COMMTIMOUT"):
        Config.from_env({"REMOTEOBJ_COMMTIMOUT": "5"})


def test_unparsable_value_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="REMOTEOBJ_COMPRESSION"):
        Config.from_env({"REMOTEOBJ_COMPRESSION": "maybe"})


@pytest.mark.parametrize(
    "changes",
    [
        {"serializer": "pickle"},
        {"workers": 0},
        {"ns_port": 70000},
        {"commtimeout": -1},
        {"accepted_serializers": frozenset({"pickle"})},
        {"ns_renew": 30.0, "ns_lease": 30.0},
        {"reply_spin": -0.001},
        {"request_spin": 0.5},
    ],
)
def test_invalid_values_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="invalid Config"):
        Config(**changes)  # type: ignore[arg-type]


def test_busy_polling_is_bounded_and_can_be_turned_off() -> None:
    assert Config().reply_spin == Config().request_spin == 0.0002
    off = Config.from_env({"REMOTEOBJ_REPLY_SPIN": "0", "REMOTEOBJ_REQUEST_SPIN": "0"})
    assert off.reply_spin == off.request_spin == 0
    with pytest.raises(ValueError, match=r"reply_spin must be at most 0\.01"):
        Config(reply_spin=1.0)


def test_replace_validates_too() -> None:
    assert Config().replace(workers=2).workers == 2
    with pytest.raises(ValueError):
        Config().replace(workers=-1)


def test_default_follows_the_environment_as_it_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMOTEOBJ_COMMTIMEOUT", "7")
    assert Config.default().commtimeout == 7
    monkeypatch.setenv("REMOTEOBJ_COMMTIMEOUT", "8")
    assert Config.default().commtimeout == 8
    monkeypatch.delenv("REMOTEOBJ_COMMTIMEOUT")
    assert Config.default() == Config()
