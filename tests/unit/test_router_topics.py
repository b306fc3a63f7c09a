"""The router parses a device topic once; what it keeps never changes an answer."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from devices.families import Family
from devices.privacy import MacHasher
from ingest import router as router_module
from ingest.registry_cache import KnownDevice, RegistryCache
from ingest.router import Router

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
READING = orjson.dumps({"ts": NOW.timestamp() - 60, "energy_import_wh": 1})


def _router() -> tuple[Router, RegistryCache]:
    cache = RegistryCache()
    cache.by_id = {f"m{i}": KnownDevice(f"m{i}", Family.GRID_METER, True) for i in range(8)}
    cache.loaded_at = float("inf")
    return Router(prefix="city", registry=cache, hasher=MacHasher(lambda at: bytes(32)),
                  max_payload_bytes=65536, future_skew_s=300, max_age_days=400), cache


def test_a_kept_topic_still_meets_the_registry_as_it_is_now() -> None:
    router, cache = _router()
    assert router.route("city/grid/m1/reading", READING, NOW).rejection is None
    cache.by_id["m1"] = KnownDevice("m1", Family.GRID_METER, False)
    rej = router.route("city/grid/m1/reading", READING, NOW).rejection
    assert rej is not None and rej.reason == "inactive_device"
    del cache.by_id["m1"]
    rej = router.route("city/grid/m1/reading", READING, NOW).rejection
    assert rej is not None and rej.reason == "unknown_device"


def test_bad_topics_are_refused_every_time_and_never_kept() -> None:
    router, _ = _router()
    for _ in range(2):
        for topic in ("city/grid/m1/unknown", "city/grid/bad id/reading", "city/grid/m1"):
            rej = router.route(topic, READING, NOW).rejection
            assert rej is not None and rej.reason == "unknown_topic", topic
    assert router._topics == {}


def test_the_kept_topics_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(router_module, "TOPIC_CACHE_MAX", 3)
    router, _ = _router()
    for round_ in range(2):
        for i in range(8):
            routed = router.route(f"city/grid/m{i}/reading", READING, NOW)
            assert routed.rejection is None and routed.readings[0].device_id == f"m{i}"
            assert len(router._topics) <= 3, round_
