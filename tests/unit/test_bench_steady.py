"""The API benchmark's wait for a steady machine: it measures once the probe runs within
the tolerance of the fastest seen, and its patience is bounded."""

from __future__ import annotations

from collections.abc import Iterator

from bench.apilib.steady import Steady, StealMeter, probe_ms


def _probes(values: list[float]) -> Iterator[float]:
    yield from values


def test_it_waits_until_the_machine_is_back_to_its_best_speed() -> None:
    seq = _probes([4.0, 7.0, 6.0, 4.4, 9.0])
    steady = Steady(tolerance=1.25, pause_s=0.0, probe=lambda: next(seq))
    assert steady.wait("first")["speed"] == 1.0  # the first probe is the best so far
    got = steady.wait("second")  # 7.0 and 6.0 are too slow; 4.4 is within 1.25 x 4.0
    assert got["probe_ms"] == 4.4 and got["speed"] == round(4.0 / 4.4, 2)
    assert steady.best == 4.0


def test_its_patience_is_bounded_per_measurement_and_per_run() -> None:
    slow = Steady(tolerance=1.25, pause_s=0.01, max_wait_s=0.2, probe=lambda: 9.0,
                  best=4.0)
    got = slow.wait("slow")  # never fast again: measures anyway after max_wait_s
    assert got["probe_ms"] == 9.0 and got["speed"] == round(4.0 / 9.0, 2)
    assert 0.2 <= got["waited_s"] < 1
    spent = Steady(tolerance=1.25, pause_s=0.01, budget_s=0.0, probe=lambda: 9.0, best=4.0)
    assert spent.wait("no budget left")["waited_s"] < 0.05


def test_the_probe_and_the_steal_meter_read_this_machine() -> None:
    assert probe_ms() > 0
    steal = StealMeter().percent()
    assert steal is None or 0 <= steal <= 100


def test_a_measurement_records_the_speed_before_it_and_the_steal_during_it() -> None:
    seq = _probes([4.0, 8.0, 4.2])
    steady = Steady(tolerance=1.25, pause_s=0.0, probe=lambda: next(seq), best=4.0)
    steady.wait("first")
    with steady.measuring("second") as machine:
        assert machine["probe_ms"] == 4.2 and "steal_pct" not in machine
    assert "steal_pct" in machine
