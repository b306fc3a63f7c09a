"""Open data from the database: collecting the aggregates (reusing the routes' queries and
rollups), publishing the package, serving it without a token. See docs/opendata.md."""
