"""Beffroi's SQL migrations, ``NNN_name.sql``: package data read with importlib.resources."""
