"""What every family generator shares: the run context and the generator interface."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from simulators.model import Emission
from simulators.rhythms import LocalClock
from simulators.scenario import ResolvedWindow, Scenario

CHUNK_S = 3600  # generators advance one simulated hour at a time (memory stays bounded)


@dataclass(frozen=True)
class GenContext:
    """A run's scenario, window and local calendar, and its seeded random streams."""

    scenario: Scenario
    window: ResolvedWindow
    clock: LocalClock

    def rng(self, *keys: str | int) -> np.random.Generator:
        """An independent random stream for ``keys`` (e.g. family, site), fixed by the seed."""
        words = [self.scenario.seed & 0xFFFFFFFF]
        words += [k if isinstance(k, int) else zlib.crc32(k.encode()) for k in keys]
        return np.random.default_rng(np.random.SeedSequence(words))

    def footfall_factor(self, site: str) -> npt.NDArray[np.float64]:
        """Per-minute multiplier of market and concert events on ``site``."""
        out = np.ones(len(self.clock.sod), np.float64)
        for ev in self.scenario.events:
            if ev.type in ("market", "concert") and ev.site == site:
                out[self.clock.active(ev)] *= ev.factor
        return out


class Generator(Protocol):
    """A family generator: emits the clean readings of ``[t0, t1)`` seconds."""

    def step(self, t0: int, t1: int) -> list[Emission]:
        """Advance to ``t1``; readings may be timed up to a minute past ``t1``."""
        ...


__all__ = ["CHUNK_S", "GenContext", "Generator"]
