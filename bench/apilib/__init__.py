"""Helpers of ``make bench-api``: synthetic year (numpy, binary COPY), load, measurement."""
