"""SenML packs: the one-pass path gives what the reference path (resolved records) gives."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from devices.decoders.senml import MEASUREMENTS, _plain_pack, _resolved_pack
from devices.errors import DecodeError
from devices.readings import Reading

NOW = datetime(2024, 5, 14, 8, 42, 17, tzinfo=UTC)
BT = 1715676000

# One valid record per measurement name of each kind, in its usual unit.
VALUES: dict[str, dict[str, dict[str, Any]]] = {
    "wifi/stats": {"clients": {"u": "count", "v": 12}, "rx": {"u": "B", "v": 1000},
                   "tx": {"v": 2000}, "radio": {"vb": True}},
    "parking/state": {"occupied": {"vb": True}, "battery": {"u": "%EL", "v": 87},
                      "rssi": {"u": "dBW", "v": -134.6}, "snr": {"u": "dB", "v": 7.5}},
    "parking/status": {"battery": {"u": "/", "v": 0.8}, "paper": {"v": 0.4},
                       "fault": {"vs": ""}},
    "parking/transaction": {"transaction_id": {"vs": "T-1"}, "amount": {"u": "EUR", "v": 2.5},
                            "duration": {"u": "s", "v": 3600}, "payment_method": {"vs": "card"}},
    "grid/reading": {"energy_import": {"u": "kWh", "v": 2738.033}, "power": {"u": "W", "v": 1840.5},
                     "voltage_l1": {"u": "V", "v": 231.2}, "current_l1": {"u": "A", "v": 8},
                     "frequency": {"u": "Hz", "v": 50.01}},
}  # fmt: skip
ODD: list[object] = [None, True, False, 0, -1, 1, 1.5, 2**63, 1e39, "", "x", "kWh", "%", [],
                     {}, "a b", "occupied"]


def valid(key: str, times: int = 1) -> list[dict[str, Any]]:
    """A pack of every measurement of ``key``, ``times`` time groups 60 s apart."""
    pack: list[dict[str, Any]] = []
    for g in range(times):
        for name, rec in VALUES[key].items():
            pack.append({"n": name, **rec, **({"t": 60 * g} if g else {})})
    pack[0] = {"bn": "urn:dev:dev-1:", "bt": BT, **pack[0]}
    return pack


def corpus(key: str) -> list[object]:
    base = valid(key)
    out: list[object] = [base, valid(key, 3), [], {}, [1], [{}], base[:1], base[1:],
                         [{"bn": "x:"}, *base[1:]], [*base, base[-1]],
                         [{**base[0], "bt": None}], [{**base[0], "bn": None}, *base[1:]],
                         [{"bn": "dev-1/", "bu": "W"}, {"n": "power", "v": 3}],
                         [{"bn": "dev-1/", "bu": "W"}, {"n": "power", "u": None, "v": 3}],
                         # A unit given as null is no unit, not the base unit.
                         [{"bn": "dev-1/", "bu": "kWh"}, {"n": "energy_import", "u": None,
                                                         "v": 3}],
                         [{"bn": "dev-1/", "bu": "%EL"}, {"n": "battery", "u": None,
                                                         "v": 0.5}, {"n": "occupied", "v": 1}],
                         [*base, {"n": "unknown", "v": 1}], [*base, {"n": "unknown"}],
                         [*base, {"n": "x", "v": 1, "extra_": 1}], [*base, {"n": "x", "s": 1}],
                         [{"bt": 1e308}, {"bt": 1e308, "n": "power", "v": 1, "t": 1e308}],
                         [{**r, "t": -30} for r in base], [{**r, "bver": 10} for r in base]]
    for i, rec in enumerate(base):
        for label in ("bn", "bt", "bu", "n", "u", "v", "vb", "vs", "t"):
            for value in ODD:
                out.append([*base[:i], {**rec, label: value}, *base[i + 1:]])
            out.append([*base[:i], {k: v for k, v in rec.items() if k != label}, *base[i + 1:]])
    return out


def answer(fn: Any, key: str, pack: object) -> list[Reading] | str | None:
    try:
        result: list[Reading] | None = fn("dev-1", key, MEASUREMENTS[key], pack, NOW)
    except DecodeError as exc:
        return f"{exc.reason} | {exc.detail}"
    return result


@pytest.mark.parametrize("key", sorted(MEASUREMENTS))
def test_the_one_pass_path_gives_what_the_reference_path_gives(key: str) -> None:
    taken = 0
    for pack in corpus(key):
        plain = answer(_plain_pack, key, pack)
        assert not isinstance(plain, str)  # it never refuses: the reference path does
        if plain is not None:
            taken += 1
            assert plain == answer(_resolved_pack, key, pack), pack
    assert taken > 20  # valid packs of many shapes took it


@pytest.mark.parametrize("key", sorted(MEASUREMENTS))
def test_usual_packs_take_the_one_pass_path(key: str) -> None:
    for times in (1, 10):
        readings = answer(_plain_pack, key, valid(key, times))
        assert isinstance(readings, list) and len(readings) == times
