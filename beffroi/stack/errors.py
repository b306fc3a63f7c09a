"""The development stack's error."""

from beffroi.context import CommandError


class StackError(CommandError):
    """The development stack cannot do what was asked; the message tells the user why."""
