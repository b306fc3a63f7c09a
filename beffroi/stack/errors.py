"""Errors of the local stack."""


class StackError(RuntimeError):
    """The local stack could not be set up or started; the message says what to do."""
