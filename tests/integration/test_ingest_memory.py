"""Memory while draining a backlog: the ingestor reads no further ahead than its in-flight bound.

Mosquitto 2.0.11 does not hold to the client's Receive Maximum when it delivers a persistent
session's queue: it sends everything it has. Unless the ingestor stops reading the socket
itself, the whole backlog ends up in its memory (about 0.9 KB per small message: 800 MB for
a backlog of 1,000,000). Here a real ``beffroi ingest`` drains a backlog queued while it was
stopped; its peak resident set (VmHWM) may only grow by what ``receive_maximum`` messages hold.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from beffroi.stack import Stack
from tests.integration.ingest_helpers import IngestProcess
from tests.integration.mqtt_helpers import count, publish_fast, register, wait_until

pytestmark = [pytest.mark.stack, pytest.mark.slow]

METERS = 20
BACKLOG = 150_000
# A bound of 10,000 in-flight messages (batches of 2,500: a batch being written, two queued,
# one filling) grows the peak RSS over the idle ingestor's by about 10 MB; reading the backlog
# as fast as the broker sends it (the bug this guards against) grew it by 85 to 95 MB.
RECEIVE_MAXIMUM = 10_000
MAX_GROWTH_MB = 30


def _backlog(prefix: str, uid: str) -> list[tuple[str, bytes]]:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)
    return [(f"{prefix}/grid/{uid}-m{i % METERS:02d}/reading",
             orjson.dumps({"ts": (t0 + timedelta(seconds=i)).isoformat(),
                           "energy_import_wh": i}))
            for i in range(BACKLOG)]


def test_backlog_drain_stays_within_the_inflight_bound(stack: Stack, db_url: str, uid: str,
                                                       tmp_path: Path) -> None:
    register(db_url, uid, {f"{uid}-m{i:02d}": "grid_meter" for i in range(METERS)})
    proc = IngestProcess(stack, db_url, tmp_path / "ingest.log", env={
        "BEFFROI_INGEST_RECEIVE_MAXIMUM": str(RECEIVE_MAXIMUM),
        "BEFFROI_INGEST_BATCH_SIZE": str(RECEIVE_MAXIMUM // 4)})

    def rows() -> int:
        return count(db_url, "grid_readings", "device_id LIKE %s", (f"{uid}-m%",))

    try:
        proc.start()  # creates the persistent session and its subscription
        idle_kb = proc.status_kb("VmHWM")
        assert proc.stop() == 0
        assert publish_fast(stack, _backlog(proc.prefix, uid)) == BACKLOG
        proc.start()
        wait_until(lambda: rows() >= BACKLOG, timeout=120, interval=0.5,
                   what=f"the backlog of {BACKLOG} messages to be written")
        peak_kb = proc.status_kb("VmHWM")
        assert proc.stop() == 0
    finally:
        proc.close()
    with_values = count(db_url, "grid_readings",
                        "device_id LIKE %s AND energy_import_wh BETWEEN 0 AND %s",
                        (f"{uid}-m%", BACKLOG - 1))
    assert rows() == with_values == BACKLOG  # every message once (unique on device, time)
    assert count(db_url, "dead_letters", "topic LIKE %s", (f"%{uid}%",)) == 0
    growth_mb = (peak_kb - idle_kb) / 1024
    assert growth_mb < MAX_GROWTH_MB, (
        f"peak RSS grew by {growth_mb:.0f} MB draining {BACKLOG} messages "
        f"(idle {idle_kb / 1024:.0f} MB, peak {peak_kb / 1024:.0f} MB)")
