-- Every change of the registry (devices, sites) is notified on channel beffroi_registry:
-- the API processes keep their registry lookups (a site or device row, a district's count
-- of meters, a zone's slowest sensor) until then instead of asking them on every request
-- (api/lookups.py). One notification per statement, sent at commit (none on rollback).
CREATE FUNCTION registry_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('beffroi_registry', TG_TABLE_NAME);
    RETURN NULL;
END
$$;
CREATE TRIGGER devices_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON devices
    FOR EACH STATEMENT EXECUTE FUNCTION registry_changed();
CREATE TRIGGER sites_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON sites
    FOR EACH STATEMENT EXECUTE FUNCTION registry_changed();
