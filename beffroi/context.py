"""What every command gets: the settings and the stack they describe."""

from __future__ import annotations

from functools import cached_property

from beffroi.settings import Settings
from beffroi.stack import Stack


class CommandError(RuntimeError):
    """A command cannot do what was asked; the message tells the user why."""


class Context:
    """Settings plus lazily built shared objects."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def stack(self) -> Stack:
        """The local (or external) services."""
        return Stack(self.settings)

    def database_url(self) -> str:
        """URL of the database in use."""
        return self.stack.database_url()
