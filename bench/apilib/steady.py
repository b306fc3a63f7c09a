"""How fast the machine is right now, and waiting for it to be itself before a measurement.

On a shared virtual machine the speed moves by a third or more within minutes (the
benchmark client's own CPU per request, the same work each time, measured 0.17 to 0.65 ms
in one morning), and a measurement taken in a slow spell says more about the neighbours
than about the code. Before each measurement the benchmark times a fixed piece of
pure-Python work; when it runs more than ``tolerance`` times slower than the fastest seen
in the run, it waits for the machine to come back (a few seconds at a time, bounded per
measurement and per run), then measures anyway. The choice depends only on the probe,
never on a measurement's result, and each row records the probe, the wait and the share
of the cores the hypervisor took (steal) during the measurement.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_TICK = os.sysconf("SC_CLK_TCK")
PROBE_LOOPS = 100_000


def probe_ms() -> float:
    """Wall milliseconds of a fixed piece of pure-Python work, best of five (nothing else
    of the benchmark runs meanwhile)."""
    best = math.inf
    for _ in range(5):
        t = time.perf_counter()
        x = 0
        for i in range(PROBE_LOOPS):
            x += i * i % 7
        best = min(best, time.perf_counter() - t)
    return best * 1000


def steal_ticks() -> int | None:
    """Clock ticks the hypervisor gave other guests so far, all cores (None: unknown)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(fields[8])
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class Steady:
    """The fastest probe of the run, and how long to wait for the machine to be that fast
    again (within ``tolerance``) before a measurement."""

    tolerance: float = 1.25
    max_wait_s: float = 30.0  # per measurement
    budget_s: float = 600.0  # over the whole run
    pause_s: float = 3.0
    probe: Callable[[], float] = probe_ms
    best: float = math.inf
    waited_s: float = 0.0

    def wait(self, what: str) -> dict[str, float]:
        """Probe until the machine runs within ``tolerance`` of its best (or patience runs
        out); the last probe, the speed it means (best / probe) and the seconds waited."""
        t0 = time.monotonic()
        probe = self.probe()
        self.best = min(self.best, probe)
        while (probe > self.tolerance * self.best and time.monotonic() - t0 < self.max_wait_s
               and self.waited_s + time.monotonic() - t0 < self.budget_s):
            time.sleep(self.pause_s)
            probe = self.probe()
            self.best = min(self.best, probe)
        waited = time.monotonic() - t0
        self.waited_s += waited
        if waited > 1:
            log.info("%s: waited %.0fs for the machine (probe %.1f ms, best %.1f ms)", what,
                     waited, probe, self.best)
        return {"probe_ms": round(probe, 2), "speed": round(self.best / probe, 2),
                "waited_s": round(waited, 1)}


    @contextmanager
    def measuring(self, what: str) -> Iterator[dict[str, float | None]]:
        """Around a measurement, once the machine is steady (:meth:`wait`): the machine's
        speed before it, then, on leaving, the hypervisor's steal during it."""
        machine: dict[str, float | None] = {**self.wait(what)}
        steal = StealMeter()
        yield machine
        machine["steal_pct"] = steal.percent()


class StealMeter:
    """The share of the cores the hypervisor took between :meth:`start` and
    :meth:`percent`."""

    def __init__(self) -> None:
        self._t = time.monotonic()
        self._ticks = steal_ticks()

    def percent(self) -> float | None:
        """Stolen share of all cores since the start, in percent."""
        now = steal_ticks()
        wall = time.monotonic() - self._t
        if now is None or self._ticks is None or wall <= 0:
            return None
        return round((now - self._ticks) / _TICK / (wall * (os.cpu_count() or 1)) * 100, 1)
