"""Small helpers for running service processes as an unprivileged user and waiting on them."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from beffroi.stack.errors import StackError


def is_root() -> bool:
    """True when running as root."""
    return os.geteuid() == 0


def service_user(preferred: str) -> str | None:
    """The user a service runs as: ``preferred`` when we are root, else None (ourselves)."""
    if not is_root():
        return None
    try:
        pwd.getpwnam(preferred)
    except KeyError as exc:
        raise StackError(f"system user {preferred!r} is missing; install its package") from exc
    return preferred


def as_user(user: str | None, argv: Sequence[str]) -> list[str]:
    """Prefix ``argv`` so it runs as ``user`` (None: as ourselves)."""
    if user is None:
        return list(argv)
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    return [runuser, "-u", user, "--", *argv]


def run(argv: Sequence[str], *, user: str | None = None, check: bool = True,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing output; raise StackError with its output on failure."""
    cmd = as_user(user, argv)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise StackError(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}{proc.stderr}"
        )
    return proc


def chown_tree(path: Path, user: str | None) -> None:
    """Give ``path`` (recursively) to ``user`` when we run services as another user."""
    if user is None:
        return
    pw = pwd.getpwnam(user)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    for root, dirs, files in os.walk(path):
        os.chown(root, pw.pw_uid, pw.pw_gid)
        for name in dirs + files:
            os.lchown(Path(root) / name, pw.pw_uid, pw.pw_gid)


def user_can_reach(user: str | None, path: Path) -> bool:
    """True when ``user`` can traverse every parent directory of ``path``."""
    if user is None:
        return True
    parent = path.resolve().parent
    proc = subprocess.run(as_user(user, ["test", "-x", str(parent)]), check=False)
    return proc.returncode == 0


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could listen on host:port now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return not port_open(host, port)


def wait_for_port(host: str, port: int, *, timeout: float, what: str, log: Path) -> None:
    """Wait until host:port accepts connections, or raise pointing at the log file."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        time.sleep(0.1)
    tail = ""
    if log.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    raise StackError(
        f"{what} did not accept connections on {host}:{port} within {timeout:.0f}s; "
        f"see {log}\n{tail}"
    )


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with Path(f"/proc/{pid}/stat").open() as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def read_pid(path: Path) -> int | None:
    """The pid in a pid file, if the file exists and the process is alive."""
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None
