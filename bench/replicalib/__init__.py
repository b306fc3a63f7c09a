"""Pieces of ``make bench-replica``: replication lag sampling, the report."""
