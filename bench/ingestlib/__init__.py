"""Pieces of ``python -m bench.ingest``: the stream, publishers, subscribers, process stats."""
