"""What every command gets: the settings, and the development stack when asked for.

The production commands read their endpoints from the settings (:mod:`beffroi.endpoints`);
with ``BEFFROI_DEV_STACK`` (or in the commands made for the development stack: ``stack``,
``demo``), the endpoints left unset are taken from the stack under ``state_dir`` first.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from beffroi import endpoints
from beffroi.settings import Settings

if TYPE_CHECKING:
    from beffroi.stack import Stack


class CommandError(RuntimeError):
    """A command cannot do what was asked; the message tells the user why."""


class Context:
    """Settings plus lazily built shared objects."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def dev_stack(self) -> bool:
        """True when the development stack provides the endpoints left unset."""
        return self.settings.dev_stack

    @cached_property
    def stack(self) -> Stack:
        """The development stack (``beffroi stack``) under ``state_dir``."""
        from beffroi.stack import Stack

        return Stack(self.settings)

    @cached_property
    def client_settings(self) -> Settings:
        """The settings production code reads: the development stack's endpoints filled in
        when it is in use, the settings as given otherwise."""
        return self.stack.client_settings() if self.dev_stack else self.settings

    def database_url(self) -> str:
        """URL of the database in use."""
        return endpoints.database_url(self.client_settings)

    def broker_address(self) -> tuple[str, int]:
        """Host and port of the broker in use."""
        return endpoints.broker_address(self.client_settings)

    def local_broker(self) -> Stack | None:
        """The development stack whose broker accounts a command may rewrite, or None
        (production: accounts are exported as files, ``--export``)."""
        if self.dev_stack and not self.settings.external_broker:
            return self.stack
        return None
