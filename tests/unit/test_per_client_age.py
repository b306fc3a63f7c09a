"""Per-client readings are hashed only with their own day's key and never kept past 24 h."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from devices.errors import TOO_OLD, DecodeError
from devices.families import Family
from devices.privacy import MacHasher
from devices.readings import PER_CLIENT, TABLE_OF, WifiSession
from ingest.keys import KeyRing
from ingest.registry_cache import KnownDevice, RegistryCache
from ingest.router import Router

PARIS = ZoneInfo("Europe/Paris")


def _ring(*days: date) -> KeyRing:
    ring = KeyRing(PARIS)
    ring.keys = {d: bytes([i + 1]) * 32 for i, d in enumerate(days)}
    return ring


def _router(ring: KeyRing) -> Router:
    cache = RegistryCache()
    cache.by_id = {"ap": KnownDevice("ap", Family.WIFI_AP, True)}
    cache.loaded_at = float("inf")
    return Router(prefix="city", registry=cache, hasher=MacHasher(ring.key_for),
                  max_payload_bytes=65536, future_skew_s=300, max_age_days=400)


def _session(at: datetime) -> bytes:
    return json.dumps({"ts": at.isoformat(), "client_mac": "02:00:5e:10:00:01",
                       "event": "associated"}).encode()


def test_every_reading_with_a_client_pseudonym_is_per_client() -> None:
    with_client = {r for r in TABLE_OF if "client_key" in r._fields}
    assert with_client == {WifiSession} and with_client <= PER_CLIENT


def test_a_destroyed_day_key_is_never_replaced_by_a_newer_one() -> None:
    ring = _ring(date(2026, 12, 2), date(2026, 12, 3))
    assert ring.key_for(datetime(2026, 12, 2, 0, 0, tzinfo=PARIS)) == b"\x01" * 32
    assert ring.key_for(datetime(2026, 12, 3, 23, 0, tzinfo=PARIS)) == b"\x02" * 32
    with pytest.raises(DecodeError) as err:
        ring.key_for(datetime(2026, 12, 1, 23, 59, 59, tzinfo=PARIS))
    assert err.value.reason == TOO_OLD and "2026-12-01" in err.value.detail


@pytest.mark.parametrize(("age", "reason"), [
    (timedelta(hours=26), TOO_OLD),   # the day before yesterday's or yesterday's key: gone
    (timedelta(minutes=30), TOO_OLD),  # 23:40 yesterday, received at 00:10: its key is gone
    (timedelta(minutes=5), None),     # 00:05 today
])
def test_late_sessions_are_refused_not_rehashed(age: timedelta, reason: str | None) -> None:
    received = datetime(2026, 12, 2, 0, 10, tzinfo=PARIS)
    router = _router(_ring(date(2026, 12, 2)))
    routed = router.route("city/wifi/ap/sessions", _session(received - age),
                          received.astimezone(UTC))
    rej = routed.rejection
    assert (rej.reason if rej else None) == reason, routed
    assert rej is None or "02:00:5e" not in rej.detail.lower()
    assert (rej is None) == (len(routed.readings) == 1)


def test_per_client_rows_older_than_24_hours_are_refused_even_with_their_key() -> None:
    # 27 October 2024 has 25 hours in Paris: at 23:50 its 00:10 is 24 h 40 min old, and the
    # day's key is still in force.
    day = date(2024, 10, 27)
    router = _router(_ring(day))
    received = datetime(2024, 10, 27, 23, 50, tzinfo=PARIS)
    late = datetime(2024, 10, 27, 0, 10, tzinfo=PARIS)
    routed = router.route("city/wifi/ap/sessions", _session(late), received.astimezone(UTC))
    assert routed.rejection is not None and routed.rejection.reason == TOO_OLD
    assert "24 h" in routed.rejection.detail
    fresh = datetime(2024, 10, 27, 1, 10, tzinfo=PARIS)  # 23 h 40 min old
    ok = router.route("city/wifi/ap/sessions", _session(fresh), received.astimezone(UTC))
    assert ok.rejection is None and len(ok.readings) == 1
    # Counters of the access point are not per-client: the 400-day window applies.
    stats = json.dumps({"ts": late.isoformat(), "clients": 3}).encode()
    assert router.route("city/wifi/ap/stats", stats, received.astimezone(UTC)).rejection is None
