"""Which rollup reader a metric's request uses: a reader of local days answers only
buckets made of whole days of the configured zone, of the scope and bucket it declares;
the first that fits replaces the metric's rolled function, coverage and slot."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from api.metrics.base import ZONE, Rollup, RollupReader, whole_days
from api.metrics.grid import ENERGY, EXPORT, PEAKS, VOLTAGE
from api.metrics.parking import REVENUE
from api.metrics.wifi import CLIENTS, VISITORS
from api.timeq import Buckets, make_buckets

PARIS = ZoneInfo("Europe/Paris")
START = datetime(2025, 10, 24, 22, tzinfo=UTC)  # 2025-10-25 00:00 in Paris
END = datetime(2025, 10, 27, 23, tzinfo=UTC)  # 2025-10-28 00:00, after the 25-hour day


def test_whole_days_are_local_midnights_of_the_buckets_zone() -> None:
    assert whole_days(make_buckets(START, END, "1d", PARIS))
    assert whole_days(make_buckets(START, END, "1w", PARIS))
    assert not whole_days(make_buckets(START, END, "1h", PARIS))
    utc_days = make_buckets(START, END, "1d", ZoneInfo("UTC")).edges
    assert not whole_days(Buckets("1d", PARIS, utc_days))  # UTC midnights, Paris days
    # a month cut at a publication's end (open data): its label says 1mo, its end is 09:00
    cut = Buckets("1mo", PARIS, [START, datetime(2025, 10, 27, 8, tzinfo=UTC)])
    assert not whole_days(cut)


def test_a_reader_of_local_days_needs_whole_days_of_the_configured_zone() -> None:
    days = make_buckets(START, END, "1d", PARIS)
    reader = RollupReader("f", ("1d", "1mo"), local_days=True, setting_args=ZONE)
    assert reader.fits("device", days, "Europe/Paris")
    assert not reader.fits("device", days, "Europe/Berlin")  # another configured zone
    cut = Buckets("1mo", PARIS, [START, datetime(2025, 10, 27, 8, tzinfo=UTC)])
    assert not reader.fits("device", cut, "Europe/Paris")
    utc = make_buckets(START, END, "1d", ZoneInfo("UTC"))
    assert not reader.fits("device", utc, "Europe/Paris")
    assert not reader.fits("device", make_buckets(START, END, "1w", PARIS), "Europe/Paris")


def test_the_grid_metrics_choose_their_readers() -> None:
    zone = "Europe/Paris"
    days = make_buckets(START, END, "1d", PARIS)
    weeks = make_buckets(START, END, "1w", PARIS)
    halves = make_buckets(START, END, "30m", PARIS)

    def name(r: RollupReader | None) -> str | None:
        return r.function if r else None

    assert name(ENERGY.reader("site", days, zone)) == "grid_energy_site_days"
    assert name(ENERGY.reader("site", weeks, zone)) == "grid_energy_days"
    assert name(ENERGY.reader("site", halves, zone)) == "grid_energy_site_30m"
    assert name(ENERGY.reader("device", days, zone)) == "grid_energy_days"
    assert name(ENERGY.reader("device", halves, zone)) is None  # the hourly rollup
    assert name(EXPORT.reader("site", days, zone)) == "grid_energy_days"  # producers only
    months = make_buckets(START, END, "1mo", PARIS)
    assert name(EXPORT.reader("site", months, zone)) == "grid_energy_months"
    assert name(ENERGY.reader("device", months, zone)) == "grid_energy_months"
    cut = Buckets("1mo", PARIS, [months.edges[0], datetime(2025, 10, 14, 22, tzinfo=UTC)])
    assert name(EXPORT.reader("site", cut, zone)) == "grid_energy_days"  # days, not a month
    assert name(VOLTAGE.reader("site", weeks, zone)) == "grid_voltage_days"
    assert name(VOLTAGE.reader("site", make_buckets(START, END, "1h", PARIS), zone)) is None
    assert name(PEAKS.reader("device", days, "Europe/Berlin")) is None


def test_revenue_of_local_days_reads_the_meters_days() -> None:
    zone = "Europe/Paris"
    for bucket in ("1d", "1w", "1mo"):
        reader = REVENUE.reader("site", make_buckets(START, END, bucket, PARIS), zone)
        assert reader is not None and reader.function == "parking_revenue_days"
        assert reader.coverage == "parking_meter_days"
    assert REVENUE.reader("device", make_buckets(START, END, "1h", PARIS), zone) is None
    assert REVENUE.reader("site", make_buckets(START, END, "1d", PARIS), "UTC") is None


def test_the_wifi_metrics_choose_their_readers() -> None:
    zone = "Europe/Paris"
    hours = make_buckets(START, END, "1h", PARIS)
    days = make_buckets(START, END, "1d", PARIS)
    for kind in ("site", "device"):
        clients = CLIENTS.reader(kind, hours, zone)
        assert clients is not None and clients.function == "wifi_clients_hours"
        assert clients.coverage is None  # the APs' watermark, as the metric's
        visitors = VISITORS.reader(kind, days, zone)
        assert visitors is not None and visitors.coverage == "wifi_visitors_1d"
    assert CLIENTS.reader("site", days, zone) is None
    assert VISITORS.reader("site", hours, zone) is None


def test_whole_months_start_at_local_midnight_on_the_first() -> None:
    months = make_buckets(START, END, "1mo", PARIS)
    assert months.whole_months and months.edges[0] == datetime(2025, 9, 30, 22, tzinfo=UTC)
    assert not make_buckets(START, END, "1d", PARIS).whole_months
    assert not Buckets("1mo", PARIS, make_buckets(START, END, "1mo", ZoneInfo("UTC")).edges
                       ).whole_months  # UTC months, Paris zone


def test_a_declaration_of_local_days_must_take_the_zone() -> None:
    with pytest.raises(ValueError, match="zone"):
        RollupReader("f", ("1d",), local_days=True)
    with pytest.raises(ValueError, match="tz"):
        Rollup("t", "day_start", "f", ("day",), local_days=True)
