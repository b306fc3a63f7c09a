-- Open data: what the national parking-places schema (etalab/schema-stationnement 0.1.5)
-- needs of a parking zone beyond the site's own name, INSEE code, coordinates and capacity.
-- One row per parking_zone site that the city publishes as a parking place; the registry
-- import writes it (the "parking" object of a site, devices/registry.py ParkingPlace).
CREATE TABLE parking_places (
    site_id                        text PRIMARY KEY REFERENCES sites (id) ON DELETE CASCADE,
    national_id                    text NOT NULL UNIQUE
                                   CHECK (national_id ~ '^([013-9][0-9]|2[AB1-9])[0-9]{3}-P-[0-9]{3}$'),
    address                        text CHECK (length(address) BETWEEN 1 AND 300),
    url                            text CHECK (url ~ '^https?://\S+$' AND length(url) <= 500),
    users                          text NOT NULL CHECK (users IN ('all', 'subscribers')),
    free                           boolean NOT NULL,
    pmr_spots                      integer NOT NULL CHECK (pmr_spots >= 0),
    ev_spots                       integer CHECK (ev_spots >= 0),
    max_height_cm                  integer CHECK (max_height_cm BETWEEN 1 AND 10000),
    operator_siret                 text NOT NULL CHECK (operator_siret ~ '^[0-9]{14}$'),
    pmr_tariff                     text CHECK (pmr_tariff IN ('free', 'normal', 'special')),
    tariff_1h_eur                  double precision CHECK (tariff_1h_eur BETWEEN 0 AND 100000),
    tariff_2h_eur                  double precision CHECK (tariff_2h_eur BETWEEN 0 AND 100000),
    tariff_3h_eur                  double precision CHECK (tariff_3h_eur BETWEEN 0 AND 100000),
    tariff_4h_eur                  double precision CHECK (tariff_4h_eur BETWEEN 0 AND 100000),
    tariff_24h_eur                 double precision CHECK (tariff_24h_eur BETWEEN 0 AND 100000),
    resident_subscription_eur      double precision
                                   CHECK (resident_subscription_eur BETWEEN 0 AND 100000),
    non_resident_subscription_eur  double precision
                                   CHECK (non_resident_subscription_eur BETWEEN 0 AND 100000),
    structure                      text CHECK (structure IN ('surface', 'building')),
    info                           text CHECK (length(info) BETWEEN 1 AND 1000),
    updated_at                     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE parking_places IS 'Parking zones published in the national parking-places schema (open data).';
COMMENT ON COLUMN parking_places.national_id IS 'Id given by the national access point: <INSEE>-P-<3 digits> (schema-stationnement id).';
COMMENT ON COLUMN parking_places.address IS 'Address of the main entrance, with postcode and town (schema-stationnement adresse).';
COMMENT ON COLUMN parking_places.users IS 'Who may park: all, or subscribers only (type_usagers tous / abonnés).';
COMMENT ON COLUMN parking_places.free IS 'Free for every user (gratuit).';
COMMENT ON COLUMN parking_places.pmr_spots IS 'Spots reserved to disabled drivers (nb_pmr).';
COMMENT ON COLUMN parking_places.max_height_cm IS 'Height limit in centimetres; NULL: none (hauteur_max N/A).';
COMMENT ON COLUMN parking_places.operator_siret IS 'SIRET of the body that runs the parking (num_siret).';
COMMENT ON COLUMN parking_places.structure IS 'surface: enclosure on the surface, building: a car-park building (type_ouvrage); NULL on street.';
