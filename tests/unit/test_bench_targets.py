"""The ingest benchmark's targets take each raw limit at the faster of its two runs."""

from __future__ import annotations

from typing import Any

from bench.ingest import targets


def _run(system: str, rate: float, **cpu: float) -> dict[str, Any]:
    return {"system": system, "readings_per_s": rate, "cpu_us_per_message": cpu}


def test_a_raw_limit_measured_low_once_does_not_flatter_the_ratio() -> None:
    runs = [_run("copy-only", 100_000), _run("broker-only", 40_000),
            _run("beffroi-1w", 30_000, ingestor=10, broker=20),
            _run("beffroi-2w", 33_000, ingestor=15, broker=22),
            _run("copy-only-again", 90_000), _run("broker-only-again", 60_000),
            _run("batched-copy-only", 80_000), _run("batched-beffroi-2w", 60_000),
            _run("batched-copy-only-again", 150_000)]
    t = targets(runs, None)
    assert t["of_lower_raw_limit"]["lower_raw_limit"] == 60_000
    assert t["two_workers"]["ratio"] == 0.55 and not t["two_workers"]["of_lower_raw_limit_met"]
    assert t["batched_of_copy_only"]["copy_only"] == 150_000
    assert not t["batched_of_copy_only"]["met"]  # 40 %, though 75 % of the slower run


def test_one_measurement_is_enough_when_the_other_is_missing() -> None:
    runs = [_run("copy-only", 100_000), _run("broker-only-again", 50_000),
            _run("beffroi-2w", 31_000, ingestor=15, broker=22)]
    t = targets(runs, None)
    assert t["of_lower_raw_limit"]["lower_raw_limit"] == 50_000
    assert t["two_workers"]["of_lower_raw_limit_met"]
