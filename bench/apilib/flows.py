"""The routes that change something, measured as the dashboard uses them.

- A sign-in code works once: the codes a measurement redeems are issued just before it
  (``POST /v1/dashboard/links``, not timed), then each is exchanged once
  (``POST /dashboard/signin``).
- A scenario run is started, read and stopped, over and over by each client
  (``POST /v1/operate/runs``, ``GET /v1/operate/runs/{id}``,
  ``POST /v1/operate/runs/{id}/stop``). At most two runs are active at once: beyond them a
  start is answered 409 at once, which is the route's answer under that load.
"""

from __future__ import annotations

import asyncio
import gc
import time
from dataclasses import dataclass, field

import httpx
import orjson

from bench.apilib.client import Connection, HttpError
from bench.apilib.measure import CpuMeter, Stats, stats_of

SIGNIN = "/dashboard/signin"
LINKS = "/v1/dashboard/links"
RUNS = "/v1/operate/runs"


def issue_codes(base: str, token: str, n: int) -> list[bytes]:
    """``n`` fresh sign-in codes, each as the JSON body that redeems it."""
    out = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"},
                      timeout=30) as client:
        for _ in range(n):
            r = client.post(LINKS)
            r.raise_for_status()
            out.append(orjson.dumps({"code": r.json()["code"]}))
    return out


@dataclass
class _Step:
    """Latencies and statuses of one step of a flow."""

    lat: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    def add(self, t0: float, status: int) -> None:
        self.lat.append(time.perf_counter() - t0)
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def stats(self, wall: float, ok: frozenset[int], cpu: dict[str, float | None] | None
              ) -> Stats:
        errors = sum(n for s, n in self.statuses.items() if s not in ok)
        return stats_of(self.lat, errors, wall, cpu)


#: Statuses that are answers of each step: a start may find two runs active (409).
RUN_OK = {"run-start": frozenset({201, 409}), "run-status": frozenset({200}),
          "run-stop": frozenset({200})}


async def run_cycles(base: str, token: str, clients: int, scenario: str, *, seconds: float,
                     meter: CpuMeter | None = None) -> dict[str, Stats]:
    """Each of ``clients`` connections starts a run of ``scenario`` (real time, an hour of
    simulated time), reads it and stops it, again and again for ``seconds``; the latency
    of each step, and the CPU per request of all of them together. A start answered 409
    (two runs active) is counted, and that client starts again."""
    gc.collect()
    steps = {name: _Step() for name in RUN_OK}
    start_body = orjson.dumps({"scenario": scenario, "speed": 1, "duration": "1h"})
    conns = [Connection(base, {"Authorization": f"Bearer {token}"}) for _ in range(clients)]

    async def cycle(conn: Connection, deadline: float) -> None:
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            try:
                a = await conn.request("POST", RUNS, start_body)
            except HttpError:
                steps["run-start"].add(t, 0)
                continue
            steps["run-start"].add(t, a.status)
            if a.status != 201:
                continue
            run = orjson.loads(a.body)["id"]
            for name, method in (("run-status", "GET"), ("run-stop", "POST")):
                path = f"{RUNS}/{run}" + ("/stop" if name == "run-stop" else "")
                t = time.perf_counter()
                try:
                    status = (await conn.request(method, path,
                                                 b"{}" if method == "POST" else None)).status
                except HttpError:
                    status = 0
                steps[name].add(t, status)

    try:
        before = meter.snapshot() if meter else None
        t0 = time.perf_counter()
        await asyncio.gather(*(cycle(c, t0 + seconds) for c in conns))
        wall = time.perf_counter() - t0
        total = sum(len(s.lat) for s in steps.values())
        cpu = (meter.per_request(before, meter.snapshot(), total)
               if meter is not None and before is not None and total else None)
    finally:
        for c in conns:
            await c.close()
    return {name: s.stats(wall, RUN_OK[name], cpu) for name, s in steps.items()}
