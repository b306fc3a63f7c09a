#!/bin/sh
# Beffroi's database role: it owns the database and its schema, and is not a superuser.
# The timescaledb image runs this once, when it creates its data directory
# (/docker-entrypoint-initdb.d/), as the superuser POSTGRES_USER on POSTGRES_DB; the
# production smoke test runs it the same way on its own cluster (tests/integration/
# test_production.py). Beffroi connects as this role (BEFFROI_DATABASE_URL) and `beffroi
# migrate` creates every table as its owner.
set -eu
: "${POSTGRES_USER:?}" "${POSTGRES_DB:?}" "${BEFFROI_DB_PASSWORD:?set BEFFROI_DB_PASSWORD}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v role="${BEFFROI_DB_USER:-beffroi}" -v password="$BEFFROI_DB_PASSWORD" \
  -v db="$POSTGRES_DB" <<'SQL'
-- Extensions are the superuser's: TimescaleDB is created here, migrations find it.
CREATE EXTENSION IF NOT EXISTS timescaledb;
CREATE ROLE :"role" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
  PASSWORD :'password';
ALTER DATABASE :"db" OWNER TO :"role";
ALTER SCHEMA public OWNER TO :"role";
SQL
