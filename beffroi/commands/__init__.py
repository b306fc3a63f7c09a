"""Subcommands of ``beffroi``; each module has ``register(subparsers)``."""
