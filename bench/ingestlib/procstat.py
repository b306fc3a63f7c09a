"""CPU time and peak RSS of process groups, sampled from /proc in a background thread."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` (None once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def hwm_kb(pid: int) -> int | None:
    """VmHWM (peak resident set) of ``pid`` in kB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def children(pid: int) -> list[int]:
    """Direct children of ``pid``."""
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text()
            out.extend(int(x) for x in text.split())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return out


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    out = [pid]
    i = 0
    while i < len(out):
        out.extend(children(out[i]))
        i += 1
    return out


def cmdline(pid: int) -> str:
    """The command line of ``pid`` (empty when gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace").strip()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""


def machine_busy_seconds() -> float:
    """CPU seconds spent by the whole machine (all cores, not idle/iowait) since boot."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in first[1:9])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


@dataclass
class Group:
    """A named set of processes, found again by ``finder`` at every sample."""

    name: str
    finder: Callable[[], list[int]]
    track_rss: bool = False
    start: dict[int, float] = field(default_factory=dict)
    last: dict[int, float] = field(default_factory=dict)
    hwm: dict[int, int] = field(default_factory=dict)

    def sample(self, *, first: bool = False) -> None:
        """Record CPU (and RSS) of the group's processes now."""
        for pid in self.finder():
            cpu = cpu_seconds(pid)
            if cpu is None:
                continue
            if pid not in self.start:
                # Present at the start: count from now; born later: count from zero.
                self.start[pid] = cpu if first else 0.0
            self.last[pid] = cpu
            if self.track_rss:
                kb = hwm_kb(pid)
                if kb is not None:
                    self.hwm[pid] = max(self.hwm.get(pid, 0), kb)

    def cpu(self) -> float:
        """CPU seconds used by the group since the first sample."""
        return sum(self.per_process().values())

    def per_process(self) -> dict[int, float]:
        """CPU seconds used by each of the group's processes since the first sample."""
        return {p: self.last[p] - self.start[p] for p in self.last}


class Sampler:
    """Samples groups every ``interval`` seconds between ``start`` and ``stop``."""

    def __init__(self, groups: list[Group], interval: float = 0.5) -> None:
        self.groups = groups
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.t0 = 0.0
        self.t1 = 0.0
        self.busy0 = 0.0
        self.busy1 = 0.0

    def start(self) -> None:
        """First sample now, then in the background."""
        self.t0 = time.monotonic()
        self.busy0 = machine_busy_seconds()
        for g in self.groups:
            g.sample(first=True)
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for g in self.groups:
                g.sample()

    def stop(self) -> None:
        """Last sample now."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for g in self.groups:
            g.sample()
        self.t1 = time.monotonic()
        self.busy1 = machine_busy_seconds()

    def report(self) -> dict[str, float]:
        """CPU seconds per group, the whole machine's, and what no group accounts for."""
        out = {g.name: round(g.cpu(), 2) for g in self.groups}
        total = self.busy1 - self.busy0
        out["machine"] = round(total, 2)
        out["unaccounted"] = round(total - sum(g.cpu() for g in self.groups), 2)
        return out
