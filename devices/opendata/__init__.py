"""Open data: the city's aggregates in the formats French portals and FIWARE consumers read.

Pure logic, no database: the statistical-secrecy rules (:mod:`.secrecy`), the Table Schemas
and CSV conventions of the datasets (:mod:`.tables`), the national parking-places schema
(:mod:`.stationnement`), NGSI-LD entities of the Smart Data Models (:mod:`.ngsild`) and the
Frictionless Data Package (:mod:`.package`). The schemas they are checked against are
shipped in ``schemas/`` at pinned commits (``schemas/MANIFEST.json``). The database side
and the HTTP routes are in :mod:`api.opendata`. See docs/opendata.md.
"""
