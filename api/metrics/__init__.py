"""Each metric declared once: its SQL functions (``sql/metrics/``), row shape, buckets and
routes. See docs/metrics.md."""
