-- The device registry: sites of the city and the equipment installed on them.
CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE sites (
    id          text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    kind        text NOT NULL CHECK (kind IN ('square', 'parking_zone', 'district')),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    insee       text NOT NULL CHECK (insee ~ '^([0-9]{5}|2[AB][0-9]{3})$'),
    latitude    double precision CHECK (latitude BETWEEN -90 AND 90),
    longitude   double precision CHECK (longitude BETWEEN -180 AND 180),
    capacity    integer CHECK (capacity >= 0),
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE sites IS 'Places the city equips: pedestrian squares, parking zones, districts.';
COMMENT ON COLUMN sites.insee IS 'INSEE code of the commune (5 characters, 2A/2B for Corsica).';
COMMENT ON COLUMN sites.latitude IS 'WGS 84 latitude of the site centre, degrees.';
COMMENT ON COLUMN sites.longitude IS 'WGS 84 longitude of the site centre, degrees.';
COMMENT ON COLUMN sites.capacity IS 'Number of parking spots of a parking zone; NULL where it has no meaning.';

CREATE TABLE devices (
    id                 text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    family             text NOT NULL
                       CHECK (family IN ('wifi_ap', 'parking_spot', 'parking_meter', 'grid_meter')),
    site_id            text NOT NULL REFERENCES sites (id),
    name               text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    latitude           double precision CHECK (latitude BETWEEN -90 AND 90),
    longitude          double precision CHECK (longitude BETWEEN -180 AND 180),
    dev_eui            text UNIQUE CHECK (dev_eui ~ '^[0-9a-f]{16}$'),
    meter_id           text UNIQUE CHECK (meter_id ~ '^[0-9]{12,14}$'),
    report_interval_s  integer NOT NULL CHECK (report_interval_s BETWEEN 1 AND 604800),
    installed_at       timestamptz,
    active             boolean NOT NULL DEFAULT true,
    metadata           jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_site_idx ON devices (site_id);
CREATE INDEX devices_family_idx ON devices (family);
COMMENT ON TABLE devices IS 'Connected equipment; the id is also the device''s MQTT user name and topic segment.';
COMMENT ON COLUMN devices.dev_eui IS 'LoRaWAN DevEUI, 16 lower-case hex digits; maps ChirpStack uplinks to the device.';
COMMENT ON COLUMN devices.meter_id IS 'Linky meter id: ADSC (12 digits, TIC standard mode) or PRM (14 digits).';
COMMENT ON COLUMN devices.report_interval_s IS 'Expected seconds between two messages (heartbeat); drives online/late/offline.';
COMMENT ON COLUMN devices.installed_at IS 'When the device was put in service (UTC).';
