"""Install what the local stack needs (Mosquitto, PostgreSQL, TimescaleDB), once."""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from beffroi.stack.errors import StackError
from beffroi.stack.process import is_root

log = logging.getLogger(__name__)

PG_ROOT = Path("/usr/lib/postgresql")


@dataclass(frozen=True)
class Binaries:
    """Where the stack's programs are."""

    pg_bin: Path
    pg_major: str
    mosquitto: Path
    dynsec_plugin: Path


def pg_major_installed() -> str | None:
    """The newest PostgreSQL major version with a server installed, if any."""
    if not PG_ROOT.is_dir():
        return None
    majors = sorted(
        (p.name for p in PG_ROOT.iterdir() if (p / "bin" / "postgres").exists()),
        key=lambda m: int(m) if m.isdigit() else 0,
    )
    return majors[-1] if majors else None


def _mosquitto() -> Path | None:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    return Path(found) if found else None


def dynsec_plugin() -> Path | None:
    """Mosquitto's dynamic-security plugin (Debian's ``mosquitto`` package ships it)."""
    found = sorted(Path("/usr/lib").glob("*/mosquitto_dynamic_security.so"))
    found += [p for p in (Path("/usr/lib/mosquitto_dynamic_security.so"),) if p.exists()]
    return found[0] if found else None


def missing() -> list[str]:
    """What is not installed yet (empty when everything is there)."""
    out: list[str] = []
    if _mosquitto() is None or dynsec_plugin() is None:
        out.append("mosquitto")
    if shutil.which("mosquitto_sub") is None:
        out.append("mosquitto-clients")
    major = pg_major_installed()
    if major is None:
        out.append("postgresql")
        out.append("timescaledb")
    elif not Path(f"/usr/share/postgresql/{major}/extension/timescaledb.control").exists():
        out.append(f"timescaledb for PostgreSQL {major}")
    return out


def script_path() -> Path:
    """The installer shell script shipped with the package."""
    return Path(str(resources.files("beffroi.stack") / "install-deps.sh"))


def ensure_installed() -> Binaries:
    """Install what is missing (as root or through sudo), or explain what to run."""
    todo = missing()
    if todo:
        script = script_path()
        if is_root():
            cmd = ["bash", str(script)]
        elif shutil.which("sudo") and subprocess.run(
            ["sudo", "-n", "true"], capture_output=True, check=False
        ).returncode == 0:
            cmd = ["sudo", "-n", "bash", str(script)]
        else:
            raise StackError(
                "Beffroi's local stack needs " + ", ".join(todo) + ", which are not installed,\n"
                "and this user cannot install packages. Ask an administrator to run:\n\n"
                f"    sudo bash {script}\n\n"
                "(it installs the Debian packages mosquitto, mosquitto-clients, postgresql and\n"
                "TimescaleDB: the Debian package on Debian 13, built from Debian's source\n"
                "package on Debian 12, about one minute), then run this command again."
            )
        log.warning("installing %s (first run only; building TimescaleDB takes about a minute)",
                    ", ".join(todo))
        proc = subprocess.run(cmd, check=False)
        if proc.returncode != 0:
            raise StackError(f"installing {', '.join(todo)} failed (exit {proc.returncode})")
        still = missing()
        if still:
            raise StackError(f"still missing after install: {', '.join(still)}")
    major = pg_major_installed()
    mosq, plugin = _mosquitto(), dynsec_plugin()
    assert major is not None and mosq is not None and plugin is not None
    return Binaries(pg_bin=PG_ROOT / major / "bin", pg_major=major, mosquitto=mosq,
                    dynsec_plugin=plugin)
