"""``beffroi api --workers 2``: two uvicorn worker processes, each serving the API from the
same settings."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from api.tokens import create_token
from beffroi.stack import Stack

pytestmark = pytest.mark.stack


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def test_two_workers_serve_the_api(stack: Stack, db_url: str, tmp_path: Path) -> None:
    with psycopg.connect(db_url) as conn:
        token, _ = create_token(conn, f"workers-{os.getpid()}", ["read"])
    port = _free_port()
    env = {**os.environ, "BEFFROI_DEV_STACK": "1", "BEFFROI_DATABASE_URL": db_url}
    exe = Path(sys.executable).with_name("beffroi")
    log = (tmp_path / "api.log").open("w")
    proc = subprocess.Popen([str(exe), "api", "--port", str(port), "--workers", "2",
                             "--maintenance-interval", "0"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        workers: list[int] = []
        while len(workers) < 2 or not _ready(base):
            assert proc.poll() is None, (tmp_path / "api.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "api.log").read_text()
            time.sleep(0.2)
            workers = _children(proc.pid)
        answers = {httpx.get(f"{base}/v1/sites", headers={"Authorization": f"Bearer {token}"},
                             timeout=30).status_code for _ in range(10)}
        assert answers == {200}
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    started = (tmp_path / "api.log").read_text().count("Started server process")
    assert started == 2, (tmp_path / "api.log").read_text()


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
