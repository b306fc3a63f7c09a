"""``beffroi ingest --workers N`` supervises its workers: a dead one is restarted and
reported, the workers die with their parent, and a second ingestor with the same client ids
does not fight the first one for their sessions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from beffroi.settings import Settings
from beffroi.stack import Stack
from ingest.runner import session_present
from ingest.service import BrokerConfig
from tests.integration.ingest_helpers import IngestProcess
from tests.integration.mqtt_helpers import Publisher, count, purge_session, register, wait_until

pytestmark = [pytest.mark.stack, pytest.mark.slow]

METERS = 10


def _workers(parent: int) -> set[int]:
    """Pids of the worker processes of ``parent`` (spawned by multiprocessing)."""
    out = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in cmdline:
            out.add(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _publish(stack: Stack, prefix: str, uid: str, n: int, start: int) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)
    pub = Publisher.as_role(stack, "admin")
    try:
        pub.publish_many([(f"{prefix}/grid/{uid}-m{i % METERS}/reading",
                           orjson.dumps({"ts": (t0 + timedelta(seconds=i)).isoformat(),
                                         "energy_import_wh": i}))
                          for i in range(start, start + n)])
    finally:
        pub.close()


def _rows(db_url: str, uid: str) -> int:
    return count(db_url, "grid_readings", "device_id LIKE %s", (f"{uid}-m%",))


@pytest.fixture
def procs(stack: Stack) -> Iterator[list[IngestProcess]]:
    started: list[IngestProcess] = []
    yield started
    for p in started:
        if p.proc is not None and p.proc.poll() is None:
            p.kill()
        for cid in p.client_ids:
            purge_session(stack, cid)


def test_a_dead_worker_is_restarted_and_reported(stack: Stack, db_url: str, uid: str,
                                                 tmp_path: Path,
                                                 procs: list[IngestProcess]) -> None:
    register(db_url, uid, {f"{uid}-m{i}": "grid_meter" for i in range(METERS)})
    ing = IngestProcess(stack, db_url, tmp_path / "ingest.log", workers=2)
    procs.append(ing)
    ing.start()
    assert ing.proc is not None
    before = _workers(ing.proc.pid)
    assert len(before) == 2
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: f"(pid {victim}) died" in ing.log_path.read_text(), timeout=30,
               what="the death reported")
    wait_until(lambda: len(_workers(ing.proc.pid) - before) == 1  # type: ignore[union-attr]
               and ing.log_path.read_text().count("subscribed as") >= 3, timeout=60,
               what="the worker restarted and subscribed")
    # both workers take their share again: every message is stored
    _publish(stack, ing.prefix, uid, 2000, 0)
    wait_until(lambda: _rows(db_url, uid) >= 2000, timeout=60, what="every message stored")
    assert ing.stop() == 0
    assert _rows(db_url, uid) == 2000


def test_workers_die_with_their_parent(stack: Stack, db_url: str, tmp_path: Path,
                                       procs: list[IngestProcess]) -> None:
    ing = IngestProcess(stack, db_url, tmp_path / "ingest.log", workers=2)
    procs.append(ing)
    ing.start()
    assert ing.proc is not None
    workers = _workers(ing.proc.pid)
    assert len(workers) == 2
    ing.proc.send_signal(signal.SIGKILL)  # the parent alone
    ing.proc.wait(timeout=30)
    wait_until(lambda: not any(_alive(p) for p in workers), timeout=60,
               what="the workers to stop after their parent")
    assert "stopped:" in ing.log_path.read_text()  # they stopped gracefully (SIGTERM)


def test_a_second_ingestor_does_not_fight_the_first(stack: Stack, db_url: str, uid: str,
                                                    tmp_path: Path,
                                                    procs: list[IngestProcess]) -> None:
    """A second ``ingest`` with the same client ids waits for the first one to stop (a
    leftover, say) instead of taking its sessions in turn; then it takes over, and every
    message published in between is stored once."""
    register(db_url, uid, {f"{uid}-m{i}": "grid_meter" for i in range(METERS)})
    first = IngestProcess(stack, db_url, tmp_path / "first.log", workers=2)
    procs.append(first)
    first.start()
    second = IngestProcess(stack, db_url, tmp_path / "second.log", workers=2,
                           env={k: v for k, v in first.env.items()
                                if k in ("BEFFROI_INGEST_CLIENT_ID",
                                         "BEFFROI_INGEST_SHARE_GROUP",
                                         "BEFFROI_TOPIC_PREFIX")})
    second.client_ids, second.prefix = first.client_ids, first.prefix
    procs.append(second)
    log = second.log_path.open("ab")
    second.proc = subprocess.Popen(
        [sys.executable, "-m", "beffroi.cli", "ingest", "--workers", "2", "--no-progress"],
        env=second.env, stdout=log, stderr=log)
    wait_until(lambda: second.log_path.read_text().count("waiting until it stops") >= 2,
               timeout=60, what="the second ingestor to wait for the first")
    _publish(stack, first.prefix, uid, 1000, 0)
    wait_until(lambda: _rows(db_url, uid) >= 1000, timeout=60, what="the first one storing")
    first_log = first.log_path.read_text()
    assert "disconnected" not in first_log  # never taken over
    assert "connected to the broker" not in second.log_path.read_text()
    _publish(stack, first.prefix, uid, 1000, 1000)
    assert first.stop() == 0
    wait_until(lambda: second.log_path.read_text().count("subscribed as") >= 2, timeout=60,
               what="the second ingestor to start once the first stopped")
    _publish(stack, first.prefix, uid, 1000, 2000)
    wait_until(lambda: _rows(db_url, uid) >= 3000, timeout=60, what="every message stored")
    assert second.stop() == 0
    assert _rows(db_url, uid) == 3000


def test_fewer_workers_end_the_sessions_left_behind(stack: Stack, db_url: str, uid: str,
                                                    tmp_path: Path,
                                                    procs: list[IngestProcess]) -> None:
    """Going from 2 workers to 1 stores what worker 1's session holds, then ends that
    session: the broker no longer keeps a copy of every message for it."""
    register(db_url, uid, {f"{uid}-m{i}": "grid_meter" for i in range(METERS)})
    two = IngestProcess(stack, db_url, tmp_path / "two.log", workers=2)
    procs.append(two)
    two.start()
    assert two.stop() == 0
    _publish(stack, two.prefix, uid, 1000, 0)  # queued in both workers' sessions
    one = IngestProcess(stack, db_url, tmp_path / "one.log", workers=1,
                        env={k: v for k, v in two.env.items()
                             if k in ("BEFFROI_INGEST_CLIENT_ID", "BEFFROI_INGEST_SHARE_GROUP",
                                      "BEFFROI_TOPIC_PREFIX")})
    one.client_ids, one.prefix = two.client_ids[:1], two.prefix
    procs.append(one)
    one.start()
    assert "left the broker session of worker 1" in one.log_path.read_text()
    _publish(stack, two.prefix, uid, 1000, 1000)
    wait_until(lambda: _rows(db_url, uid) >= 2000, timeout=60, what="every message stored")
    assert one.stop() == 0
    assert _rows(db_url, uid) == 2000
    host, port = stack.broker_address()
    user, password = stack.mqtt_credentials("admin")
    settings = Settings(ingest_client_id=two.env["BEFFROI_INGEST_CLIENT_ID"])
    broker = BrokerConfig(host, port, user, password)
    assert not session_present(settings, broker, 1)
    assert session_present(settings, broker, 0)
