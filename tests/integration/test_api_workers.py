"""``beffroi api`` as deployed: ``--workers 2`` runs two uvicorn processes serving the API
from the same settings; the access log is on unless ``BEFFROI_API_ACCESS_LOG=false``."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
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


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def _beffroi_api(db_url: str, log: Path, *args: str, **env: str) -> Iterator[str]:
    """``beffroi api`` on a free port until its workers answer; its base URL. ``log``
    holds its output when the block ends."""
    port = _free_port()
    workers = int(args[args.index("--workers") + 1]) if "--workers" in args else 1
    full_env = {**os.environ, "BEFFROI_DEV_STACK": "1", "BEFFROI_DATABASE_URL": db_url, **env}
    exe = Path(sys.executable).with_name("beffroi")
    with log.open("w") as out:
        proc = subprocess.Popen([str(exe), "api", "--port", str(port), "--maintenance-interval",
                                 "0", *args], env=full_env, stdout=out, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while (workers > 1 and len(_children(proc.pid)) < workers) or not _ready(base):
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            yield base
        finally:
            proc.terminate()
            proc.wait(30)


def test_two_workers_serve_the_api(stack: Stack, db_url: str, tmp_path: Path) -> None:
    with psycopg.connect(db_url) as conn:
        token, _ = create_token(conn, f"workers-{os.getpid()}", ["read"])
    log = tmp_path / "api.log"
    with _beffroi_api(db_url, log, "--workers", "2") as base:
        answers = {httpx.get(f"{base}/v1/sites", headers={"Authorization": f"Bearer {token}"},
                             timeout=30).status_code for _ in range(10)}
        assert answers == {200}
    text = log.read_text()
    assert text.count("Started server process") == 2, text
    assert '"GET /v1/sites HTTP/1.1" 200' in text  # the access log, on by default


def test_the_access_log_can_be_switched_off(stack: Stack, db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "api.log"
    with _beffroi_api(db_url, log, BEFFROI_API_ACCESS_LOG="false") as base:
        assert httpx.get(f"{base}/health", timeout=30).status_code == 200
    text = log.read_text()
    assert "Started server process" in text and "GET /health" not in text, text
