"""Statistical secrecy: which published cells could single out a person or a household.

A cell counting fewer people (wifi visitors, associations, sessions) or delivery points
(electricity) than a threshold is *suppressed*: its values are left empty and its
``secret_statistique`` flag is true, never a silent zero. A zero count is published (nobody
was there: it singles no one out). A monthly cell built from daily cells is also suppressed
when the days suppressed in that month could be recovered from it by subtraction and would
fall under the threshold (*secondary* suppression).

Electricity: decree n° 2020-196 of 4 March 2020 (Code de l'énergie, D. 111-52 ff.) sets the
aggregation threshold of published consumption at 10 delivery points (it was 11).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_WIFI_MIN_COUNT = 10
DEFAULT_ENERGY_MIN_POINTS = 10  # decree 2020-196 of 4 March 2020


@dataclass(frozen=True)
class Thresholds:
    """The smallest count a published cell may rest on."""

    wifi: int = DEFAULT_WIFI_MIN_COUNT
    energy_points: int = DEFAULT_ENERGY_MIN_POINTS

    def __post_init__(self) -> None:
        if self.wifi < 1 or self.energy_points < 1:
            raise ValueError("secrecy thresholds are at least 1")


def too_small(count: int | None, threshold: int) -> bool:
    """True when a count of people or points must not be published (0 < count < threshold)."""
    return count is not None and 0 < count < threshold


def recoverable(hidden: Iterable[int], threshold: int, *, same_units: bool) -> bool:
    """True when the total of a period would disclose its suppressed sub-cells.

    ``hidden`` are the counts of the suppressed sub-cells (days). Publishing the total lets
    anyone subtract the published days and get the hidden ones together: that is safe when
    none is hidden, or when together they rest on at least ``threshold``. With
    ``same_units`` (delivery points: the same meters every day) the hidden days rest on at
    least their largest count only, so the largest is compared; otherwise (daily visitors,
    whose keys change every day) their sum.
    """
    counts = list(hidden)
    if not counts:
        return False
    together = max(counts) if same_units else sum(counts)
    return together < threshold


__all__ = ["DEFAULT_ENERGY_MIN_POINTS", "DEFAULT_WIFI_MIN_COUNT", "Thresholds", "recoverable",
           "too_small"]
