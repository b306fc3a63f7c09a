"""The local stack: comes up from nothing, is idempotent, stops exactly what it started."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from beffroi.settings import Settings
from beffroi.stack import Stack
from beffroi.stack.errors import StackError
from beffroi.stack.process import pid_alive, port_open

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def private_stack(tmp_path: Path) -> Iterator[Stack]:
    """A second, independent stack in a temporary state dir on free ports."""
    st = Stack(Settings(state_dir=tmp_path / "state", pg_port=_free_port(),
                        mqtt_port=_free_port()))
    yield st
    st.reset()


def test_a_second_stack_moves_off_ports_another_program_holds(tmp_path: Path) -> None:
    """Another checkout's stack holds the default ports: this one takes free ports, records
    them, and every later process of this checkout finds them."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    state = tmp_path / "state"
    state.mkdir()
    (state / "ports.json").write_text(f'{{"pg_port": {taken}, "mqtt_port": {taken}}}')
    st = Stack(Settings(state_dir=state))
    assert st.settings.pg_port == taken and not st.port_is_explicit("pg_port")
    try:
        st.up()
        later = Stack(Settings(state_dir=state)).settings  # what the next process sees
        assert taken not in (later.pg_port, later.mqtt_port)
        assert (later.pg_port, later.mqtt_port) == (st.settings.pg_port, st.settings.mqtt_port)
        with psycopg.connect(Stack(later).database_url()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert port_open("127.0.0.1", later.mqtt_port)
        # an explicit port is never moved: the stack says it is taken
        explicit = Stack(Settings(state_dir=tmp_path / "other", pg_port=taken))
        with pytest.raises(StackError, match="taken by another program"):
            explicit.up()
    finally:
        holder.close()
        st.reset()


def test_up_from_nothing_is_idempotent_and_down_leaves_nothing(private_stack: Stack) -> None:
    first = private_stack.up()
    assert any(line.startswith("started: PostgreSQL") for line in first), first
    assert any(line.startswith("started: Mosquitto") for line in first), first
    pids = {s.name: s.pid for s in private_stack.status()}
    assert all(pids.values()), pids

    with psycopg.connect(private_stack.database_url()) as conn:
        row = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        preload = conn.execute("SHOW shared_preload_libraries").fetchone()
    assert preload is not None and "timescaledb" in preload[0]
    assert row is None  # the extension is created by migrations, not by the stack

    second = private_stack.up()
    assert all(line.startswith("already running") for line in second), second
    assert {s.name: s.pid for s in private_stack.status()} == pids

    private_stack.down()
    for pid in pids.values():
        assert pid is not None and not pid_alive(pid)
    assert not port_open("127.0.0.1", private_stack.settings.pg_port)
    assert not port_open("127.0.0.1", private_stack.settings.mqtt_port)
    assert all(not s.running for s in private_stack.status())


def test_down_does_not_touch_another_stack(private_stack: Stack, stack: Stack) -> None:
    main_pids = {s.name: s.pid for s in stack.status()}
    private_stack.up()
    private_stack.down()
    assert {s.name: s.pid for s in stack.status()} == main_pids
    assert all(pid is not None and pid_alive(pid) for pid in main_pids.values())


def test_broker_refuses_anonymous_and_wrong_password(stack: Stack) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    host, port = stack.broker_address()
    for user, password in ((None, None), ("beffroi-ingest", "wrong")):
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if user:
            client.username_pw_set(user, password)
        codes: list[object] = []
        client.on_connect = lambda c, u, f, rc, p, out=codes: out.append(rc)
        client.connect(host, port)
        client.loop_start()
        try:
            _wait(lambda out=codes: bool(out))
        finally:
            client.loop_stop()
            client.disconnect()
        assert codes and codes[0].is_failure, (user, codes)  # type: ignore[attr-defined]


def test_external_database_is_honoured(tmp_path: Path, db_url: str, stack: Stack) -> None:
    host, port = stack.broker_address()
    ext = Stack(Settings(state_dir=tmp_path / "ext", database_url=db_url,
                         broker_url=f"mqtt://{host}:{port}", pg_port=_free_port()))
    lines = ext.up()
    assert lines == ["external database and broker in use; nothing to start"]
    assert ext.database_url() == db_url
    assert not (tmp_path / "ext" / "postgres").exists()
    assert not port_open("127.0.0.1", ext.settings.pg_port)
    statuses = {s.name: s for s in ext.status()}
    assert not statuses["postgresql"].managed and not statuses["mosquitto"].managed


def _wait(cond: object, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("condition not met before the deadline")
