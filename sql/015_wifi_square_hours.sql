-- A square's hours already summed: the sum over its access points of the mean count each
-- reported in the hour (clients_mean) and how many reported (aps), next to the busiest
-- minute it held already. The clients route's hourly buckets of a square then read one
-- row per hour (a month: 720 rows) instead of its APs' rows grouped per bucket. Written
-- by the maintenance job with the `wifi_ap` rollup (metric.wifi_site_fill), APs counted
-- under the square they belong to at rollup time.
ALTER TABLE rollup_wifi_site_1h ADD COLUMN clients_mean double precision,
                                ADD COLUMN aps integer;

-- The hours rolled up before: the same from the APs' hourly rows, with the APs in the
-- square now, as the route read them until now (an hour none of whose APs is in the square
-- any more stays without: it answers null, as it did).
UPDATE rollup_wifi_site_1h s SET clients_mean = a.clients_mean, aps = a.aps
FROM (
    SELECT r.hour, d.site_id, sum(r.clients_sum::float8 / r.reports) AS clients_mean,
           count(*)::integer AS aps
    FROM rollup_wifi_ap_1h r JOIN devices d ON d.id = r.device_id
    WHERE d.family = 'wifi_ap' AND r.reports > 0
    GROUP BY 1, 2
) a
WHERE s.site_id = a.site_id AND s.hour = a.hour;
