"""docker-compose.yml and the Dockerfile describe what the production smoke test runs
(tests/integration/test_production.py, from tests/production_plan.py)."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any
from urllib.parse import urlsplit

import yaml

from tests import production_plan as plan


def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(plan.COMPOSE_FILE.read_text())
    return doc


def _interpolated(value: str) -> str:
    """A compose value with its ``${VAR...}`` references replaced by a placeholder."""
    return re.sub(r"\$\{[^}]*\}", "secret", value)


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", plan.DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _pip_runs() -> list[list[str]]:
    """The arguments of every ``pip`` command the Dockerfile runs."""
    runs = []
    for word, rest in _dockerfile():
        if word == "RUN":
            for cmd in rest.split("&&"):
                argv = shlex.split(cmd)
                if argv and argv[0] == "pip":
                    runs.append([a for a in argv[1:] if a != "--no-cache-dir"])
    return runs


def test_services_are_the_smoke_tests() -> None:
    assert set(_compose()["services"]) == plan.SERVICES


def test_beffroi_services_run_the_smoke_tests_commands() -> None:
    services = _compose()["services"]
    for name, command in plan.COMMANDS.items():
        assert tuple(services[name]["command"]) == command, name
        assert services[name]["build"] == ".", name  # the Dockerfile's image
    assert plan.API_PORT in plan.COMMANDS["api"]
    assert services["api"]["ports"] == [f"{plan.API_PORT}:{plan.API_PORT}"]
    workers = int(plan.COMMANDS["ingest"][plan.COMMANDS["ingest"].index("--workers") + 1])
    exposed = {int(p) for p in services["ingest"]["expose"]}
    assert exposed == {plan.METRICS_PORT + i for i in range(workers)}


def test_beffroi_services_have_the_smoke_tests_environment() -> None:
    services = _compose()["services"]
    for name in plan.COMMANDS:
        env: dict[str, str] = services[name]["environment"]
        assert set(env) == set(plan.FIXED_ENV) | plan.DEPLOYMENT_ENV, name
        assert {k: env[k] for k in plan.FIXED_ENV} == plan.FIXED_ENV, name
        assert not set(env) & plan.TEST_ONLY_ENV
        db = urlsplit(_interpolated(env["BEFFROI_DATABASE_URL"]))
        assert db.scheme == "postgresql" and db.username == plan.DB_ROLE
        assert db.hostname == "timescaledb" and db.path == f"/{plan.DB_NAME}"
        broker = urlsplit(env["BEFFROI_BROKER_URL"])
        assert (broker.hostname, broker.port) == ("mosquitto", plan.BROKER_PORT)


def test_database_is_initialised_by_the_smoke_tests_script() -> None:
    db = _compose()["services"]["timescaledb"]
    env = db["environment"]
    assert env["POSTGRES_DB"] == plan.DB_NAME
    assert env["POSTGRES_USER"] != plan.DB_ROLE  # Beffroi's role is not the superuser
    assert "BEFFROI_DB_PASSWORD" in env and "BEFFROI_DB_USER" not in env  # role: beffroi
    script = (plan.ROOT / plan.PG_INIT_SCRIPT).read_text()
    assert '"${BEFFROI_DB_USER:-' + plan.DB_ROLE + '}"' in script
    mounts = [v.split(":") for v in db["volumes"]]
    assert any(src == f"./{plan.PG_INIT_SCRIPT}" and dst.startswith(plan.PG_INIT_DIR)
               for src, dst, *_ in mounts)
    command = db["command"]
    settings = dict(command[i + 1].split("=") for i, a in enumerate(command) if a == "-c")
    assert settings == plan.PG_SETTINGS


def test_broker_uses_the_smoke_tests_configuration() -> None:
    mq = _compose()["services"]["mosquitto"]
    mounts = {dst: src for src, dst, *_ in (v.split(":") for v in mq["volumes"])}
    assert mounts[plan.BROKER_CONFIG_DIR] == f"./{plan.BROKER_CONFIG_SOURCE}"
    assert plan.BROKER_DATA_DIR in mounts
    assert mq["ports"] == [f"{plan.BROKER_PORT}:{plan.BROKER_PORT}"]
    conf = (plan.ROOT / plan.BROKER_CONFIG_SOURCE / "mosquitto.conf").read_text()
    assert f"listener {plan.BROKER_PORT}\n" in conf
    assert f"plugin {plan.DYNSEC_PLUGIN}\n" in conf
    for name in ("passwd", "acl", "dynamic-security.json"):  # what --export writes
        assert f"{plan.BROKER_CONFIG_DIR}/{name}\n" in conf
    assert f"persistence_location {plan.BROKER_DATA_DIR}/\n" in conf


def test_image_leaves_out_what_the_smoke_test_leaves_out() -> None:
    ignored = (plan.ROOT / ".dockerignore").read_text().split()
    for pattern in plan.BUILD_IGNORED:
        assert f"**/{pattern}" in ignored, pattern


def test_image_is_built_and_installed_as_the_smoke_test_does() -> None:
    instructions = _dockerfile()
    bases = [rest for word, rest in instructions if word == "FROM"]
    assert bases and all(b.startswith(f"python:{plan.PYTHON}-") for b in bases)
    copied = [src for word, rest in instructions if word == "COPY"
              and not rest.startswith("--from") and "lock" not in rest
              for src in rest.split()[:-1]]
    assert tuple(copied) == plan.IMAGE_SOURCES
    runs = _pip_runs()
    steps = [plan.PIP_BUILD_BACKEND, plan.PIP_WHEEL, plan.PIP_DEPENDENCIES, plan.PIP_PACKAGE]
    assert len(runs) == len(steps)
    for run, step in zip(runs, steps, strict=True):
        assert run[:len(step) - 1] == list(step[:-1]) or run[:len(step)] == list(step), run
        if step[-2] == "-r":  # the lock file, wherever the image copied it
            assert run[len(step) - 1].endswith(step[-1]), run
    entry = [rest for word, rest in instructions if word == "ENTRYPOINT"]
    assert entry and tuple(json.loads(entry[-1])) == plan.ENTRYPOINT
    user = [rest for word, rest in instructions if word == "USER"]
    assert user and user[-1] not in ("root", "0")
