"""What the production smoke test runs, stated once.

``tests/integration/test_production.py`` runs these steps natively; ``tests/unit/
test_deploy_files.py`` checks that ``docker-compose.yml`` and the ``Dockerfile`` say the same,
so the two cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

#: The image's Python (``FROM python:<this>-...``) is the one the smoke test installs into.
PYTHON = "3.11"
#: What the image copies into its build stage, and the smoke test into its build directory.
IMAGE_SOURCES = ("pyproject.toml", "setup.py", "README.md", "sql", "beffroi", "devices", "ingest",
                 "api", "simulators")
#: Left out of what is copied (.dockerignore): bytecode, and the C extensions that the
#: editable install builds in place; the build stage compiles its own.
BUILD_IGNORED = ("__pycache__", "*.pyc", "*.so")
#: pip steps, in order: the build backend, the wheel, the locked dependencies, the wheel.
PIP_BUILD_BACKEND = ("install", "--require-hashes", "-r", "requirements-build.lock")
PIP_WHEEL = ("wheel", "--no-deps", "--no-build-isolation")
PIP_DEPENDENCIES = ("install", "--require-hashes", "-r", "requirements.lock")
PIP_PACKAGE = ("install", "--no-deps")
ENTRYPOINT = ("beffroi",)

SERVICES = frozenset({"timescaledb", "mosquitto", "migrate", "ingest", "api"})
#: Each Beffroi service's command (the arguments of ``beffroi``).
COMMANDS = {
    "migrate": ("migrate",),
    "ingest": ("ingest", "--workers", "2", "--no-progress"),
    "api": ("api", "--host", "0.0.0.0", "--port", "8000"),
}
#: The API's port in the container; the smoke test listens on a free port instead.
API_PORT = "8000"
#: Environment of the Beffroi services: fixed values, and those the deployment provides.
FIXED_ENV = {
    "BEFFROI_INGEST_MQTT_USERNAME": "beffroi-ingest-{n}",
    "BEFFROI_INGEST_METRICS_HOST": "0.0.0.0",
    "BEFFROI_TIMEZONE": "Europe/Paris",
    "BEFFROI_LOG_LEVEL": "INFO",
}
DEPLOYMENT_ENV = frozenset({"BEFFROI_DATABASE_URL", "BEFFROI_BROKER_URL",
                            "BEFFROI_INGEST_MQTT_PASSWORD"})
#: Set by the smoke test only: free ports on a machine shared with other runs.
TEST_ONLY_ENV = frozenset({"BEFFROI_INGEST_METRICS_PORT"})
#: Default metrics port of worker 0 (worker i: +i), exposed by the ingest service.
METRICS_PORT = 9108

#: The database: the superuser's init script creates Beffroi's role (not a superuser).
DB_NAME = "beffroi"
DB_ROLE = "beffroi"
PG_INIT_SCRIPT = "deploy/postgres/init-beffroi.sh"
PG_INIT_DIR = "/docker-entrypoint-initdb.d/"
PG_SETTINGS = {"track_commit_timestamp": "on"}
#: The broker: deploy/mosquitto/ (its mosquitto.conf, and the exported accounts) is the
#: broker's configuration directory; its data directory holds the persistent sessions.
BROKER_CONFIG_SOURCE = "deploy/mosquitto"
BROKER_CONFIG_DIR = "/mosquitto/config"
BROKER_DATA_DIR = "/mosquitto/data"
BROKER_PORT = 1883
#: Where the image's dynamic-security plugin is (the smoke test uses the system's).
DYNSEC_PLUGIN = "/usr/lib/mosquitto_dynamic_security.so"
