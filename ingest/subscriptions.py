"""Which topic filters each ingestor worker subscribes to, and which it drops from its session.

One worker subscribes to everything: ``{prefix}/#`` and the two bridge filters. With
``--workers N`` on plain subscriptions, the topics are split between the workers by topic
filter, so that the broker sends each message to one worker only (a filter matching every
topic, on every worker, made it send each message N times and each worker read them all:
docs/ingest.md, *Two workers*). The split must cover every topic ``{prefix}/#`` covers,
with no topic matched twice; MQTT filters match whole levels, so the split is by level:

- the device topics ``{prefix}/{segment}/{id}/{message}`` of each known segment
  (``{prefix}/grid/+/+``...), one group per segment;
- each bridge filter, one group each;
- the rest: every topic under ``{prefix}`` with another number of levels (``{prefix}``,
  ``{prefix}/+``, ``{prefix}/+/+``, ``{prefix}/+/+/+/+/#``), all refused as
  ``unknown_topic`` and kept as dead letters.

What no filter of the split matches is a topic of four levels under an unknown segment
(``{prefix}/bogus/x/y``): no device, bridge or simulator account may publish there (their
broker ACLs name the known segments only), so only the operator's admin account could.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from beffroi.settings import Settings
from devices.families import SEGMENTS, bridge_topics

#: Group names, in the order they are dealt to the workers (group ``k`` goes to worker
#: ``k mod N``): with two workers, worker 0 takes the grid meters, the wifi and the Linky
#: frames, worker 1 the parking (own topics and LoRaWAN) and the rest.
GROUP_ORDER: Final = ("grid", "parking", "wifi", "chirpstack", "teleinfo", "rest")


@dataclass(frozen=True, slots=True)
class FilterGroup:
    """Topic filters always subscribed together, by one worker."""

    name: str
    filters: tuple[str, ...]


def filter_groups(prefix: str, bridge_prefix: str = "") -> tuple[FilterGroup, ...]:
    """The groups of the split, in ``GROUP_ORDER``: together they match every topic the
    single worker's filters match, except four-level topics under an unknown segment."""
    chirpstack, teleinfo = bridge_topics(bridge_prefix)
    by_name: dict[str, tuple[str, ...]] = {s: (f"{prefix}/{s}/+/+",) for s in SEGMENTS}
    by_name |= {"chirpstack": (chirpstack,), "teleinfo": (teleinfo,),
                "rest": (prefix, f"{prefix}/+", f"{prefix}/+/+", f"{prefix}/+/+/+/+/#")}
    if set(by_name) != set(GROUP_ORDER):
        raise RuntimeError(f"topic groups {sorted(by_name)} differ from {GROUP_ORDER}")
    return tuple(FilterGroup(name, by_name[name]) for name in GROUP_ORDER)


def max_plain_workers() -> int:
    """How many workers plain subscriptions can keep busy: one per group."""
    return len(GROUP_ORDER)


def catch_all(prefix: str, bridge_prefix: str = "") -> list[str]:
    """The filters of a single worker (and of every worker on a shared subscription)."""
    return [f"{prefix}/#", *bridge_topics(bridge_prefix)]


def shared_filters(filters: list[str], group: str) -> list[str]:
    """``filters`` as a shared subscription of share group ``group``."""
    return [f"$share/{group}/{f}" for f in filters]


def worker_groups(worker: int, workers: int, prefix: str,
                  bridge_prefix: str = "") -> tuple[FilterGroup, ...]:
    """The groups worker ``worker`` of ``workers`` subscribes to on plain subscriptions."""
    if not 0 <= worker < workers <= max_plain_workers():
        raise ValueError(f"worker {worker} of {workers}: plain subscriptions split the topics "
                         f"between at most {max_plain_workers()} workers")
    groups = filter_groups(prefix, bridge_prefix)
    return tuple(g for k, g in enumerate(groups) if k % workers == worker)


def worker_filters(worker: int, workers: int, *, prefix: str, bridge_prefix: str = "",
                   shared: bool = False, share_group: str = "beffroi") -> list[str]:
    """The filters worker ``worker`` of ``workers`` subscribes to."""
    if shared:
        return shared_filters(catch_all(prefix, bridge_prefix), share_group)
    if workers == 1:
        return catch_all(prefix, bridge_prefix)
    return [f for g in worker_groups(worker, workers, prefix, bridge_prefix) for f in g.filters]


def every_filter(*, prefix: str, bridge_prefix: str = "",
                 share_group: str = "beffroi") -> list[str]:
    """Every filter any worker subscribes to in any mode and with any number of workers."""
    plain = catch_all(prefix, bridge_prefix)
    plain += [f for g in filter_groups(prefix, bridge_prefix) for f in g.filters
              if f not in plain]
    return [*plain, *shared_filters(catch_all(prefix, bridge_prefix), share_group)]


def stale_filters(own: list[str], *, prefix: str, bridge_prefix: str = "",
                  share_group: str = "beffroi") -> list[str]:
    """The filters a session may hold from a run with another mode or number of workers,
    other than ``own``: the worker drops them once every worker holds its own."""
    return [f for f in every_filter(prefix=prefix, bridge_prefix=bridge_prefix,
                                    share_group=share_group) if f not in own]


def session_filters(settings: Settings, worker: int, workers: int, *, shared: bool,
                    retire: bool = False) -> tuple[list[str], list[str]]:
    """What worker ``worker`` of ``workers`` subscribes to and what it drops, from the
    settings; a retiring worker subscribes to nothing and drops every filter."""
    where = {"prefix": settings.topic_prefix, "bridge_prefix": settings.bridge_prefix,
             "share_group": settings.ingest_share_group}
    own = [] if retire else worker_filters(worker, workers, shared=shared, **where)
    return own, stale_filters(own, **where)
