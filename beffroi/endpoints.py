"""Where the database and the broker are, and with which account: from the settings alone.

With :mod:`beffroi.settings`, Beffroi's core: it imports nothing else of the project. A
setting that is missing is an error naming its variable, raised when a command starts; no
production path falls back to the development stack (``beffroi stack``), which the CLI
resolves into these settings beforehand when ``BEFFROI_DEV_STACK`` is set.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from beffroi.settings import Settings

Role = Literal["ingest", "sim"]
DEV_STACK_HINT = ("; for the development stack of a checkout, set BEFFROI_DEV_STACK=1 "
                  "(`beffroi stack up` starts it)")


class MissingSetting(RuntimeError):
    """A setting the command needs is not set; the message names its variable."""


def database_url(settings: Settings) -> str:
    """The database every write goes to (``BEFFROI_DATABASE_URL``)."""
    if settings.database_url is None:
        raise MissingSetting("BEFFROI_DATABASE_URL is not set: give the database as "
                             "postgresql://user:password@host:port/db" + DEV_STACK_HINT)
    return settings.database_url.get_secret_value()


def read_database_url(settings: Settings) -> str:
    """The database the API reads from: the standby of ``BEFFROI_DATABASE_READ_URL`` when
    set, else the primary."""
    if settings.database_read_url is not None:
        return settings.database_read_url.get_secret_value()
    return database_url(settings)


def broker_address(settings: Settings) -> tuple[str, int]:
    """Host and port of the broker (``BEFFROI_BROKER_URL``)."""
    if settings.broker_url is None:
        raise MissingSetting("BEFFROI_BROKER_URL is not set: give the broker as "
                             "mqtt://host:port" + DEV_STACK_HINT)
    parts = urlsplit(settings.broker_url)
    return parts.hostname or "127.0.0.1", parts.port or 1883


def broker_credentials(settings: Settings, role: Role) -> tuple[str, str]:
    """User name (a template with ``{n}``: one account per connection) and password of
    Beffroi's ``ingest`` or ``sim`` broker account."""
    user, password = ((settings.ingest_mqtt_username, settings.ingest_mqtt_password)
                      if role == "ingest" else
                      (settings.sim_mqtt_username, settings.sim_mqtt_password))
    if password is None:
        raise MissingSetting(f"BEFFROI_{role.upper()}_MQTT_PASSWORD is not set: the password "
                             f"of Beffroi's {role} broker account ({user})" + DEV_STACK_HINT)
    return user, password.get_secret_value()


__all__ = ["MissingSetting", "broker_address", "broker_credentials", "database_url",
           "read_database_url"]
