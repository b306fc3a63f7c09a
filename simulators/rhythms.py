"""Daily and weekly rhythms of the town, per minute of a scenario's window, in local time.

Each profile is 24 hourly anchors (value at the middle of the hour, busiest ~ 1.0),
linearly interpolated per minute. Weekdays, Saturdays and Sundays differ.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulators.scenario import EventSpec, ResolvedWindow, parse_hhmm

F = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

# Footfall on a pedestrian square (people connecting to the public wifi).
SQUARE = {
    "weekday": (.03, .02, .01, .01, .01, .02, .06, .18, .35, .40, .48, .65,
                .95, 1.0, .70, .55, .58, .72, .85, .75, .55, .38, .22, .10),
    "saturday": (.06, .04, .02, .01, .01, .02, .04, .10, .30, .55, .80, .95,
                 1.0, .95, .85, .85, .90, .90, .85, .70, .55, .45, .30, .15),
    "sunday": (.08, .05, .03, .02, .01, .01, .02, .05, .12, .25, .40, .55,
               .65, .60, .50, .48, .50, .50, .45, .35, .25, .18, .10, .05),
}
# Arrivals in an on-street parking zone.
PARKING = {
    "weekday": (.02, .01, .01, .01, .01, .03, .15, .55, .85, .90, .80, .70,
                .75, .85, .90, .80, .75, .80, .70, .45, .30, .20, .10, .05),
    "saturday": (.04, .02, .01, .01, .01, .02, .06, .20, .55, .85, 1.0, .95,
                 .80, .80, .90, .95, .90, .80, .65, .50, .40, .30, .15, .08),
    "sunday": (.04, .02, .01, .01, .01, .01, .03, .06, .15, .30, .45, .50,
               .45, .35, .35, .40, .40, .35, .30, .25, .20, .15, .08, .04),
}
# Electricity load shapes (mean ~ 1 over a day).
RESIDENTIAL = {
    "weekday": (.55, .50, .47, .46, .46, .50, .75, 1.25, 1.20, .85, .75, .78,
                .90, .85, .75, .72, .80, 1.05, 1.55, 1.75, 1.60, 1.30, .95, .70),
    "saturday": (.60, .52, .48, .46, .46, .48, .55, .75, 1.00, 1.15, 1.15, 1.20,
                 1.30, 1.15, 1.00, .95, 1.00, 1.15, 1.50, 1.70, 1.55, 1.30, 1.00, .75),
    "sunday": (.62, .54, .49, .47, .46, .47, .52, .68, .95, 1.15, 1.20, 1.30,
               1.40, 1.20, 1.00, .95, 1.00, 1.15, 1.50, 1.65, 1.50, 1.25, .95, .72),
}
PROFESSIONAL = {
    "weekday": (.30, .30, .30, .30, .30, .32, .45, .90, 1.55, 1.75, 1.80, 1.75,
                1.50, 1.60, 1.75, 1.75, 1.70, 1.50, 1.10, .70, .45, .38, .33, .30),
    "saturday": (.30, .30, .30, .30, .30, .30, .35, .60, 1.00, 1.20, 1.25, 1.20,
                 1.00, .95, 1.10, 1.10, 1.00, .80, .55, .40, .33, .31, .30, .30),
    "sunday": (.30,) * 24,
}


def _day_type(weekday: int) -> str:
    return "saturday" if weekday == 5 else "sunday" if weekday == 6 else "weekday"


@dataclass(frozen=True)
class LocalClock:
    """Local calendar of every minute of a window (minute k starts at ``60 * k`` seconds)."""

    sod: Ints  # local seconds of day at the minute's start
    weekday: Ints  # 0 = Monday
    day: Ints  # local days since the start's date
    doy: Ints  # day of year
    utc_hour: F  # UTC hour of day at the minute's middle

    @classmethod
    def build(cls, window: ResolvedWindow, *, extra_minutes: int = 1) -> LocalClock:
        """The calendar of ``window`` plus ``extra_minutes``."""
        n = window.duration_s // 60 + extra_minutes + 1
        sod = np.empty(n, np.int64)
        weekday = np.empty(n, np.int64)
        day = np.empty(n, np.int64)
        doy = np.empty(n, np.int64)
        utc_hour = np.empty(n, np.float64)
        start = window.start.astimezone(window.tz)
        first = start.date()
        # Minute k is 60 k elapsed seconds after the start (not on the wall clock, which
        # would be an hour off after a DST change); each minute is converted on its own.
        for k in range(n):
            t = window.at(60 * k)
            sod[k] = t.hour * 3600 + t.minute * 60 + t.second
            weekday[k] = t.weekday()
            day[k] = (t.date() - first).days
            doy[k] = t.timetuple().tm_yday
            u = start.timestamp() + 60 * k + 30
            utc_hour[k] = (u % 86400) / 3600
        return cls(sod, weekday, day, doy, utc_hour)

    def profile(self, table: Mapping[str, tuple[float, ...]]) -> F:
        """The per-minute value of an hourly profile (per weekday type)."""
        hours = self.sod / 3600.0
        anchors_x = np.arange(-0.5, 25.0, 1.0)  # hour middles, wrapped at both ends
        out = np.empty(len(self.sod), np.float64)
        for kind in ("weekday", "saturday", "sunday"):
            a = table[kind]
            anchors_y = np.array((a[-1], *a, a[0]), np.float64)
            mask = np.array([_day_type(int(w)) == kind for w in self.weekday])
            out[mask] = np.interp(hours[mask], anchors_x, anchors_y)
        return out

    def active(self, ev: EventSpec) -> npt.NDArray[np.bool_]:
        """Minutes during which event ``ev`` is on."""
        a, b = parse_hhmm(ev.start), parse_hhmm(ev.end)
        on = (self.sod >= a) & (self.sod < b)
        if not ev.every_day:
            on &= self.day == ev.day
        return on

    def event_windows(self, ev: EventSpec) -> list[tuple[int, int]]:
        """The (start, end) seconds after the window start during which ``ev`` is on."""
        on = self.active(ev)
        out: list[tuple[int, int]] = []
        k = 0
        while k < len(on):
            if on[k]:
                j = k
                while j < len(on) and on[j]:
                    j += 1
                out.append((k * 60, j * 60))
                k = j
            else:
                k += 1
        return out


def daylight_factor(clock: LocalClock, longitude: float = 2.78) -> F:
    """Clear-sky PV output per kWc (0..~0.8) per minute, for northern France."""
    season = np.sin(2 * math.pi * (clock.doy - 80) / 365.0)
    length = 12.0 + 4.3 * season  # hours of daylight at ~50 degrees north
    noon = 12.0 - longitude / 15.0
    x = (clock.utc_hour - (noon - length / 2)) / length
    shape = np.where((x > 0) & (x < 1), np.sin(np.pi * np.clip(x, 0, 1)), 0.0) ** 1.3
    result: F = shape * (0.45 + 0.35 * (season + 1) / 2)
    return result


__all__ = ["PARKING", "PROFESSIONAL", "RESIDENTIAL", "SQUARE", "LocalClock", "daylight_factor"]
