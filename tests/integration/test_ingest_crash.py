"""Delivery guarantee with real processes: kill -9, a database outage, a broker restart."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psycopg
import pytest

from beffroi.stack import Stack
from tests.integration.ingest_helpers import IngestProcess
from tests.integration.mqtt_helpers import Publisher, count, register, wait_until

pytestmark = [pytest.mark.stack, pytest.mark.slow]

METERS = 20


@pytest.fixture
def ingest_proc(stack: Stack, db_url: str, tmp_path: Path) -> Iterator[IngestProcess]:
    p = IngestProcess(stack, db_url, tmp_path / "ingest.log")
    yield p
    p.close()


def _messages(prefix: str, uid: str, n: int, start: int = 0) -> list[tuple[str, bytes]]:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)
    out = []
    for i in range(start, start + n):
        meter = f"{uid}-m{i % METERS:02d}"
        t = t0 + timedelta(seconds=i)
        out.append((f"{prefix}/grid/{meter}/reading",
                    orjson.dumps({"ts": t.isoformat(), "energy_import_wh": i})))
    return out


def _register_meters(db_url: str, uid: str) -> None:
    register(db_url, uid, {f"{uid}-m{i:02d}": "grid_meter" for i in range(METERS)})


def _rows(db_url: str, uid: str) -> int:
    return count(db_url, "grid_readings", "device_id LIKE %s", (f"{uid}-m%",))


def _until_rows(db_url: str, uid: str, n: int, *, timeout: float = 120,
                what: str = "every message written") -> None:
    wait_until(lambda: _rows(db_url, uid) >= n, timeout=timeout, what=what)


def _publish(stack: Stack, msgs: list[tuple[str, bytes]]) -> None:
    """Publish with a connection of its own, closed once the broker acknowledged all."""
    pub = Publisher.as_role(stack, "admin")
    try:
        pub.publish_many(msgs)
    finally:
        pub.close()


def _rows_or_none(db_url: str, uid: str) -> int | None:
    """The row count, or None when the database cannot be reached."""
    try:
        return _rows(db_url, uid)
    except psycopg.OperationalError:
        return None


def test_kill_9_loses_nothing_and_duplicates_nothing(stack: Stack, db_url: str, uid: str,
                                                      ingest_proc: IngestProcess) -> None:
    n = 30_000
    _register_meters(db_url, uid)
    ingest_proc.start()
    pub = Publisher.as_role(stack, "admin")
    msgs = _messages(ingest_proc.prefix, uid, n)
    sender = threading.Thread(target=pub.publish_many, args=(msgs,))
    sender.start()
    try:
        _until_rows(db_url, uid, n // 4, timeout=60, what="a quarter written")
        ingest_proc.kill(signal.SIGKILL)
        written_at_kill = _rows(db_url, uid)
        assert written_at_kill < n, "the ingestor finished before it could be killed"
        sender.join(timeout=120)
        ingest_proc.start()
        _until_rows(db_url, uid, n)
        assert ingest_proc.stop() == 0
    finally:
        sender.join(timeout=120)
        pub.close()
    assert _rows(db_url, uid) == n
    assert count(db_url, "dead_letters", "topic LIKE %s", (f"%{uid}%",)) == 0


def test_database_outage_under_load_loses_nothing(stack: Stack, db_url: str, uid: str,
                                                  ingest_proc: IngestProcess) -> None:
    n = 20_000
    outage_s = 60  # at most: the outage lasts until the ingestor has retried
    _register_meters(db_url, uid)
    ingest_proc.start()
    pub = Publisher.as_role(stack, "admin")
    msgs = _messages(ingest_proc.prefix, uid, n)
    try:
        pub.publish_many(msgs[: n // 2])
        wait_until(lambda: _rows(db_url, uid) > 0, timeout=60, what="first rows")
        log_at_outage = len(ingest_proc.log_path.read_text())
        stack.postgres().stop()
        try:
            pub.publish_many(msgs[n // 2:])  # published while the database is down
            # The ingestor met the outage and retried at least once before it ends.
            wait_until(lambda: ingest_proc.log_path.read_text()[log_at_outage:].count(
                "database unavailable") >= 2, timeout=outage_s,
                what="the ingestor to retry through the outage")
            assert _rows_or_none(db_url, uid) is None  # the database is really down
            assert ingest_proc.proc is not None and ingest_proc.proc.poll() is None
        finally:
            stack.postgres().start()
        _until_rows(db_url, uid, n)
        assert ingest_proc.stop() == 0
    finally:
        pub.close()
    assert _rows(db_url, uid) == n


def test_broker_restart_resumes_session(stack: Stack, db_url: str, uid: str,
                                        ingest_proc: IngestProcess) -> None:
    """Messages queued in the ingestor's session survive a broker restart and reach the
    database once the ingestor reconnects and resumes that session.

    The ingestor is frozen (SIGSTOP) so that the broker must queue: a quarter of the stream
    before the restart, another quarter after it (the session's subscription survived);
    only a resumed session delivers them (a clean session would drop both).
    """
    n = 20_000
    _register_meters(db_url, uid)
    ingest_proc.start()
    assert ingest_proc.proc is not None
    msgs = _messages(ingest_proc.prefix, uid, n)
    live, before, after = msgs[: n // 2], msgs[n // 2: 3 * n // 4], msgs[3 * n // 4:]
    _publish(stack, live)
    _until_rows(db_url, uid, len(live), timeout=60, what="live messages")
    log_at_restart = len(ingest_proc.log_path.read_text())
    ingest_proc.proc.send_signal(signal.SIGSTOP)
    try:
        _publish(stack, before)  # acknowledged by the broker, queued for the session
        assert _rows(db_url, uid) == len(live)  # frozen: nothing of them written yet
        broker = stack.broker()
        broker.stop()   # graceful: the broker saves the session and its queued messages
        broker.start()
        _publish(stack, after)  # queued again: the subscription was restored
    finally:
        ingest_proc.proc.send_signal(signal.SIGCONT)
    _until_rows(db_url, uid, n)
    assert ingest_proc.stop() == 0
    assert _rows(db_url, uid) == n
    resumed = ingest_proc.log_path.read_text()[log_at_restart:]
    assert "(session present: True)" in resumed, resumed[-3000:]


def test_sigterm_during_database_outage_exits_in_bounded_time(
        stack: Stack, db_url: str, uid: str, tmp_path: Path) -> None:
    """A stop ends within the stop timeout whatever the database does; what was not
    committed stays unacknowledged, and the next run stores it exactly once."""
    n = 4_000
    stop_timeout_s = 3.0
    margin_s = 7.0  # process exit, disconnect and interpreter shutdown, on a loaded machine
    _register_meters(db_url, uid)
    proc = IngestProcess(stack, db_url, tmp_path / "ingest-stop.log",
                         env={"BEFFROI_INGEST_STOP_TIMEOUT_S": str(stop_timeout_s)})
    proc.start()
    pub = Publisher.as_role(stack, "admin")
    msgs = _messages(proc.prefix, uid, n)
    try:
        pub.publish_many(msgs[: n // 2])
        _until_rows(db_url, uid, n // 2, timeout=60, what="first half written")
        stack.postgres().stop()
        try:
            pub.publish_many(msgs[n // 2:])  # accepted by the broker, not writable
            wait_until(lambda: "database unavailable" in proc.log_path.read_text(),
                       timeout=60, what="the writer retrying against the stopped database")
            assert proc.proc is not None
            t0 = time.monotonic()
            proc.proc.send_signal(signal.SIGTERM)
            try:
                code = proc.proc.wait(timeout=stop_timeout_s + margin_s)
            except subprocess.TimeoutExpired:
                pytest.fail(f"still running {stop_timeout_s + margin_s:.0f} s after SIGTERM "
                            "with the database down")
            elapsed = time.monotonic() - t0
        finally:
            stack.postgres().start()
        assert code == 0, proc.log_path.read_text()[-3000:]
        assert elapsed >= stop_timeout_s * 0.9, f"exited after {elapsed:.1f} s, before trying"
        assert "the broker will deliver again" in proc.log_path.read_text()
        assert _rows(db_url, uid) == n // 2
        proc.start()  # same client id: the broker delivers what was never acknowledged
        _until_rows(db_url, uid, n)
        assert proc.stop() == 0
    finally:
        pub.close()
        proc.close()
    assert _rows(db_url, uid) == n
    assert count(db_url, "dead_letters", "topic LIKE %s", (f"%{uid}%",)) == 0
