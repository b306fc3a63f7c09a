"""The local stack: a private PostgreSQL + TimescaleDB cluster and a private Mosquitto."""

from beffroi.stack.errors import StackError
from beffroi.stack.manager import Stack

__all__ = ["Stack", "StackError"]
