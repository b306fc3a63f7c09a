"""The topic split between ingestor workers covers what one worker covers, once.

Matching is paho-mqtt's ``topic_matches_sub`` (the MQTT rules for ``+`` and ``#``), not the
module's own code, so a wrong filter cannot agree with a wrong matcher.
"""

from __future__ import annotations

import itertools

import pytest
from paho.mqtt.client import topic_matches_sub

from beffroi.broker_auth import sim_accounts
from devices.credentials import device_write_topic
from devices.families import SEGMENTS, Family, bridge_topics
from ingest.subscriptions import (
    GROUP_ORDER,
    catch_all,
    max_plain_workers,
    stale_filters,
    worker_filters,
)

PREFIX = "city"
LEVELS = ["x", "grid", "parking", "wifi", "m1", "reading", "", "state", "a-b.c"]


def _topics(prefix: str, bridge_prefix: str) -> list[str]:
    """Topics of 1 to 6 levels under the prefix and the bridges' trees."""
    root = f"{bridge_prefix}/" if bridge_prefix else ""
    out = [prefix, f"{root}teleinfo", f"{root}teleinfo/0212", f"{root}teleinfo/a/b",
           f"{root}application/7/device/70b3d5/event/up",
           f"{root}application/7/device/70b3d5/event/join", "other/topic"]
    for depth in range(1, 6):
        for levels in itertools.product(LEVELS[:5] if depth > 3 else LEVELS, repeat=depth):
            out.append("/".join((prefix, *levels)))
    return out


def _owners(topic: str, workers: int, *, prefix: str = PREFIX,
            bridge_prefix: str = "") -> list[tuple[int, str]]:
    return [(w, f) for w in range(workers)
            for f in worker_filters(w, workers, prefix=prefix, bridge_prefix=bridge_prefix)
            if topic_matches_sub(f, topic)]


def _unknown_segment(topic: str, prefix: str) -> bool:
    """A topic of four levels under the prefix whose segment is not a device family's."""
    levels = topic.split("/")
    return len(levels) == 4 and levels[0] == prefix and levels[1] not in SEGMENTS


@pytest.mark.parametrize("bridge_prefix", ["", "lns"])
@pytest.mark.parametrize("workers", range(1, max_plain_workers() + 1))
def test_the_split_matches_each_topic_once(workers: int, bridge_prefix: str) -> None:
    single = catch_all(PREFIX, bridge_prefix)
    for topic in _topics(PREFIX, bridge_prefix):
        covered = any(topic_matches_sub(f, topic) for f in single)
        owners = _owners(topic, workers, bridge_prefix=bridge_prefix)
        if workers > 1 and _unknown_segment(topic, PREFIX):
            assert owners == [], topic  # the one gap, closed by the broker's ACLs
        else:
            # One filter of one worker: one delivery, never two (even within a session).
            assert len(owners) == (1 if covered else 0), (topic, owners)


def test_a_device_topic_goes_to_the_worker_of_its_segment() -> None:
    for workers in range(2, max_plain_workers() + 1):
        for family in Family:
            topics = [device_write_topic(PREFIX, family, dev).replace("#", msg)
                      for dev in ("m1", "m2", "spot-9") for msg in ("reading", "state", "x")]
            owners = {w for t in topics for w, _ in _owners(t, workers)}
            assert len(owners) == 1, (family, workers, owners)


def test_every_topic_a_device_or_simulator_may_publish_reaches_one_worker() -> None:
    sim = sim_accounts(prefix=PREFIX, password="pw", user="sim-{n}", connections=1)[0]
    patterns = [*sim.write, *(device_write_topic(PREFIX, f, "dev1") for f in Family)]
    for pattern in patterns:
        for suffix in ("a", "a/b", "a/b/c", "dev1/reading", "dev1/reading/extra"):
            topic = pattern.replace("#", suffix).replace("+", "p")
            assert topic_matches_sub(pattern, topic)
            for workers in range(1, max_plain_workers() + 1):
                covered = any(topic_matches_sub(f, topic) for f in catch_all(PREFIX))
                assert len(_owners(topic, workers)) == (1 if covered else 0), (topic, workers)
    # The simulator writes nothing the split leaves out.
    assert not any(topic_matches_sub(p, f"{PREFIX}/bogus/dev1/reading") for p in sim.write)


def test_two_workers_take_energy_and_wifi_then_parking_and_the_rest() -> None:
    zero = worker_filters(0, 2, prefix=PREFIX)
    one = worker_filters(1, 2, prefix=PREFIX)
    chirpstack, teleinfo = bridge_topics()
    assert zero == [f"{PREFIX}/grid/+/+", f"{PREFIX}/wifi/+/+", teleinfo]
    assert one == [f"{PREFIX}/parking/+/+", chirpstack, PREFIX, f"{PREFIX}/+",
                   f"{PREFIX}/+/+", f"{PREFIX}/+/+/+/+/#"]
    assert len(GROUP_ORDER) == max_plain_workers()


def test_stale_filters_are_every_other_mode_and_split() -> None:
    one = worker_filters(0, 1, prefix=PREFIX)
    assert one == catch_all(PREFIX)
    stale = stale_filters(one, prefix=PREFIX)
    assert not set(one) & set(stale)
    assert f"{PREFIX}/grid/+/+" in stale and f"$share/beffroi/{PREFIX}/#" in stale
    zero_of_two = worker_filters(0, 2, prefix=PREFIX)
    assert f"{PREFIX}/#" in stale_filters(zero_of_two, prefix=PREFIX)
    shared = worker_filters(1, 2, prefix=PREFIX, shared=True, share_group="g")
    assert shared == [f"$share/g/{f}" for f in catch_all(PREFIX)]
    assert set(catch_all(PREFIX)) <= set(stale_filters(shared, prefix=PREFIX, share_group="g"))


def test_more_workers_than_groups_is_refused() -> None:
    with pytest.raises(ValueError, match="at most 6 workers"):
        worker_filters(0, max_plain_workers() + 1, prefix=PREFIX)
    assert worker_filters(0, 9, prefix=PREFIX, shared=True)  # shared: any number
