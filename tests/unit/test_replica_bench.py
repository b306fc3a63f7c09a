"""The replica benchmark's pure parts: lag samples and their summary, CPU per message and per
request, the data period before the stream's reading times, slices of the stream."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bench.ingestlib.stream import ensure_stream, publisher_files, read_records
from bench.replica import data_period, timeless
from bench.replicalib.lag import LagSample, sample_of, stats, summary
from bench.replicalib.report import markdown, per_unit

PARIS = ZoneInfo("Europe/Paris")


def test_a_row_of_pg_stat_replication_becomes_milliseconds_and_bytes() -> None:
    s = sample_of(10.0, (timedelta(microseconds=1500), None, timedelta(seconds=2),
                         Decimal(0), Decimal(8192), Decimal(16384)))
    assert s == LagSample(10.0, 1.5, None, 2000.0, 0, 8192, 16384)
    gone = sample_of(11.0, None)
    assert not gone.streaming and gone.replay_lag_ms is None


def test_stats_leave_out_unreported_values_and_take_the_99th_percentile() -> None:
    values: list[float | int | None] = [float(v) for v in range(1, 101)] + [None] * 10
    out = stats(values)
    assert out["samples"] == 110 and out["reported"] == 100
    assert out["max"] == 100.0 and out["p50"] == 50.5
    assert out["p99"] == pytest.approx(99.01, abs=0.05)
    assert stats([None, None]) == {"samples": 2, "reported": 0, "p50": None, "p99": None,
                                   "max": None}


def test_summary_keeps_the_samples_of_the_phase_only() -> None:
    samples = [LagSample(float(t), float(t), None, float(10 * t), t, t, 100 * t)
               for t in range(10)]
    samples.append(LagSample(5.5, None, None, None, None, None, None, streaming=False))
    out = summary(samples, 3.0, 6.0)
    assert out["replay_lag_ms"]["max"] == 60.0 and out["replay_lag_ms"]["reported"] == 4
    assert out["replay_bytes_behind"]["max"] == 600.0
    assert out["flush_lag_ms"]["reported"] == 0
    assert out["not_streaming"] == 1


def _phase(name: str, api: str | None, messages: int, cpu: dict[str, float], *,
           rate: float | None, requests: int | None = None, load: int | None = None
           ) -> dict[str, Any]:
    p: dict[str, Any] = {"phase": name, "api": api, "messages": messages, "cpu_s": cpu,
                         "offered_rate_msg_s": rate}
    if requests is not None:
        p["requests"] = requests
    if load is not None:
        p["api_load"] = {"requests": load}
    return p


def test_cpu_per_request_is_counted_beyond_the_same_ingest_without_api() -> None:
    groups = ("primary", "standby", "broker", "ingestor", "api")
    base = dict.fromkeys(groups, 0.0) | {"primary": 2.0, "standby": 1.0, "machine": 4.0}
    with_api = base | {"primary": 3.0, "standby": 6.0, "api": 2.0}
    flat = dict.fromkeys(groups, 0.0) | {"primary": 1.0, "standby": 0.5}
    flat_api = flat | {"primary": 4.0, "api": 1.0}
    rows = per_unit([
        _phase("ingest-paced", None, 10_000, base, rate=1000.0),
        _phase("ingest-max", None, 10_000, flat, rate=None),
        _phase("paced+api-standby", "standby", 20_000, with_api, rate=1000.0, requests=1000),
        _phase("max+api-primary", "primary", 10_000, flat_api, rate=None, load=500),
    ])
    assert rows[0]["us_per_message"]["primary"] == 200.0
    assert rows[0]["ms_per_request"] == {}
    # 20,000 messages cost the standby 2.0 s of replay without API: 4.0 s left for 1,000
    # requests; every server process: 11.0 - 6.0 s
    assert rows[2]["ms_per_request"] == {"api": 2.0, "database": 4.0, "servers": 5.0}
    # flat out, compared with the flat-out phase: (4.0 - 1.0) s over 500 requests
    assert rows[3]["ms_per_request"]["database"] == 6.0
    assert rows[3]["ms_per_request"]["servers"] == 8.0


def test_the_data_ends_before_the_streams_first_reading_time() -> None:
    base = datetime(2026, 3, 29, 0, 0, tzinfo=ZoneInfo("UTC")).timestamp()  # DST day
    year = data_period(base, 28, PARIS)
    assert year.days == 28
    assert year.end <= base < year.end + 86400
    assert datetime.fromtimestamp(year.end, PARIS).hour == 0


def test_a_slice_of_a_stream_file_is_the_records_after_skip(tmp_path: Path) -> None:
    d, _ = ensure_stream(tmp_path, messages=400, seed=7, publishers=2)
    f = publisher_files(d, 2)[0]
    every = read_records(f)
    assert read_records(f, 5, skip=3) == every[3:8]
    assert read_records(f, skip=len(every) - 2) == every[-2:]
    assert read_records(f, 5, skip=len(every)) == []


def test_the_page_reports_a_failed_check() -> None:
    lag = {k: {"samples": 1, "reported": 1, "p50": 1.0, "p99": 1.0, "max": 1.0}
           for k in ("write_lag_ms", "flush_lag_ms", "replay_lag_ms", "sent_bytes_behind",
                     "flush_bytes_behind", "replay_bytes_behind")}
    phase = _phase("ingest-paced", None, 100, {"primary": 1.0, "machine": 2.0}, rate=10.0) | {
        "readings_per_s": 10, "latency_ms_p50": 1.0, "latency_ms_p99": 2.0,
        "cpu_cores": {"primary": 0.5}, "lag": lag}
    doc: dict[str, Any] = {
        "generated_at": "now", "total_s": 1.0,
        "machine": {"cpu": "x", "cores": 2, "ram_gib": 1, "os": "o", "kernel": "k",
                    "python": "p", "mosquitto": "m", "postgresql": "15",
                    "timescaledb": "2", "loadavg_at_start": [0.0, 0.0, 0.0]},
        "settings": {"workers": 1, "publishers": 4, "rate_msg_s": 10.0, "max_messages": 5,
                     "seconds_per_measurement": 1.0, "load_clients": 16},
        "dataset": {"days": 1, "first": "2026-01-01", "rows": {"t": 3}, "load_s": 1.0},
        "stream": {"messages": 10, "seed": 1}, "phases": [phase],
        "check": {"messages_published": 100, "readings_published": 110,
                  "readings_stored_primary": 109, "dead_letters": 0,
                  "standby_equals_primary": True, "ok": False}}
    page = markdown(doc)
    assert "**FAILED**" in page and "109 readings stored on the primary" in page


def test_answers_are_compared_without_the_seconds_since_a_devices_last_message() -> None:
    a = {"count": 1, "data": [{"id": "d1", "status": "online", "silent_s": 12}]}
    b = {"count": 1, "data": [{"id": "d1", "status": "online", "silent_s": 13}]}
    assert timeless(a) == timeless(b) == {"count": 1, "data": [{"id": "d1",
                                                                "status": "online"}]}
    assert timeless(a) != timeless(b | {"count": 2})
