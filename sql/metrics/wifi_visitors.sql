-- Wifi visitors: per bucket of p_edges, the distinct pseudonymous clients with a session
-- event, and the associations. Client keys change at midnight in the server's time zone
-- (p_tz), so a bucket is an hour or one of those days (the routes refuse others). A site
-- (p_site: a square) counts its APs together (a client seen on two APs once); a device
-- (p_device) is one AP. The raw sessions live 24 hours (CNIL): past hours and days are
-- read from wifi_visitors_1h and wifi_visitors_1d, counts without any client key, per AP
-- and per square (device_id empty), filled by the session aggregation of
-- api/maintenance.py with wifi_visitors_hours and wifi_visitors_days.
-- Every function of the metric takes p_tz; only the daily one reads it.

CREATE FUNCTION metric.wifi_visitors(p_site text, p_device text, p_edges timestamptz[],
                                     p_lo timestamptz, p_hi timestamptz, p_tz text)
RETURNS TABLE (i integer, visitors bigint, associations bigint)
LANGUAGE sql STABLE AS $$
    SELECT width_bucket(s.time, p_edges), count(DISTINCT s.client_key),
           count(*) FILTER (WHERE s.event = 'associated')
    FROM wifi_sessions s
    WHERE s.device_id IN (SELECT id FROM metric.wifi_aps(p_site, p_device))
      AND s.time >= p_lo AND s.time < p_hi
    GROUP BY 1
$$;

-- The aggregates' rows of a square (device_id empty), or of an AP under its square.
CREATE FUNCTION metric.wifi_visitors_key(p_site text, p_device text)
RETURNS TABLE (site_id text, device_id text)
LANGUAGE sql STABLE AS $$
    SELECT coalesce(p_site, (SELECT d.site_id FROM devices d WHERE d.id = p_device)),
           coalesce(p_device, '')
$$;

-- Hourly buckets from wifi_visitors_1h.
CREATE FUNCTION metric.wifi_visitors_rollup(p_site text, p_device text,
                                            p_edges timestamptz[], p_lo timestamptz,
                                            p_hi timestamptz, p_tz text)
RETURNS TABLE (i integer, visitors bigint, associations bigint)
LANGUAGE sql STABLE AS $$
    SELECT width_bucket(v.hour, p_edges), v.visitors::bigint, v.associations::bigint
    FROM wifi_visitors_1h v, metric.wifi_visitors_key(p_site, p_device) k
    WHERE v.site_id = k.site_id AND v.device_id = k.device_id
      AND v.hour >= p_lo AND v.hour < p_hi
$$;

-- Daily buckets (the days of p_tz) from wifi_visitors_1d.
CREATE FUNCTION metric.wifi_visitors_daily(p_site text, p_device text,
                                           p_edges timestamptz[], p_lo timestamptz,
                                           p_hi timestamptz, p_tz text)
RETURNS TABLE (i integer, visitors bigint, associations bigint)
LANGUAGE sql STABLE AS $$
    SELECT width_bucket(v.day_start, p_edges), v.visitors::bigint, v.associations::bigint
    FROM wifi_visitors_1d v, metric.wifi_visitors_key(p_site, p_device) k
    WHERE v.site_id = k.site_id AND v.device_id = k.device_id AND v.tz = p_tz
      AND v.day_start >= p_lo AND v.day_start < p_hi
$$;

-- The sessions counted by the aggregation: those of [p_lo, p_hi) (a null bound: open)
-- committed up to p_upto and, when p_after is given, after it (commit timestamps,
-- track_commit_timestamp; a row whose commit time is unknown counts as committed long
-- ago). p_upto null: every row (commit times are not tracked).
CREATE FUNCTION metric.wifi_sessions_committed(p_lo timestamptz, p_hi timestamptz,
                                               p_after timestamptz, p_upto timestamptz)
RETURNS TABLE ("time" timestamptz, device_id text, site_id text, client_key bytea,
               event text)
LANGUAGE sql STABLE AS $$
    SELECT s.time, s.device_id, d.site_id, s.client_key, s.event
    FROM wifi_sessions s JOIN devices d ON d.id = s.device_id
    WHERE d.family = 'wifi_ap'
      AND (p_lo IS NULL OR s.time >= p_lo) AND (p_hi IS NULL OR s.time < p_hi)
      AND CASE WHEN p_upto IS NULL THEN true
               ELSE coalesce(pg_xact_commit_timestamp(s.xmin), '-infinity') <= p_upto
                AND (p_after IS NULL
                     OR coalesce(pg_xact_commit_timestamp(s.xmin), '-infinity') > p_after)
          END
$$;

-- How many sessions were committed in (p_after, p_upto] that lie before p_hours_before or
-- before p_days_before (hours or days already aggregated).
CREATE FUNCTION metric.wifi_sessions_late(p_after timestamptz, p_upto timestamptz,
                                          p_hours_before timestamptz,
                                          p_days_before timestamptz)
RETURNS TABLE (sessions bigint)
LANGUAGE sql STABLE AS $$
    SELECT count(*)
    FROM metric.wifi_sessions_committed(NULL, NULL, p_after, p_upto) s
    WHERE s.time < p_hours_before OR s.time < p_days_before
$$;

-- Distinct clients and associations per UTC hour, per AP and per square (device_id
-- empty), of the sessions wifi_sessions_committed gives: what wifi_visitors_1h stores.
CREATE FUNCTION metric.wifi_visitors_hours(p_lo timestamptz, p_hi timestamptz,
                                           p_after timestamptz, p_upto timestamptz)
RETURNS TABLE (hour timestamptz, site_id text, device_id text, visitors integer,
               associations integer)
LANGUAGE sql STABLE AS $$
    SELECT time_bucket('1 hour', x.time), x.site_id, coalesce(x.device_id, ''),
           count(DISTINCT x.client_key)::integer,
           (count(*) FILTER (WHERE x.event = 'associated'))::integer
    FROM metric.wifi_sessions_committed(p_lo, p_hi, p_after, p_upto) x
    GROUP BY GROUPING SETS ((time_bucket('1 hour', x.time), x.site_id, x.device_id),
                            (time_bucket('1 hour', x.time), x.site_id))
$$;

-- The same per local day of p_tz: what wifi_visitors_1d stores.
CREATE FUNCTION metric.wifi_visitors_days(p_lo timestamptz, p_hi timestamptz, p_tz text,
                                          p_after timestamptz, p_upto timestamptz)
RETURNS TABLE (day date, tz text, day_start timestamptz, site_id text, device_id text,
               visitors integer, associations integer)
LANGUAGE sql STABLE AS $$
    SELECT y.day, p_tz, y.day::timestamp AT TIME ZONE p_tz, y.site_id, y.device_id,
           y.visitors, y.associations
    FROM (
        SELECT (x.time AT TIME ZONE p_tz)::date AS day, x.site_id,
               coalesce(x.device_id, '') AS device_id,
               count(DISTINCT x.client_key)::integer AS visitors,
               (count(*) FILTER (WHERE x.event = 'associated'))::integer AS associations
        FROM metric.wifi_sessions_committed(p_lo, p_hi, p_after, p_upto) x
        GROUP BY GROUPING SETS (((x.time AT TIME ZONE p_tz)::date, x.site_id, x.device_id),
                                ((x.time AT TIME ZONE p_tz)::date, x.site_id))
    ) y
$$;

-- The hours' fill of the job (wifi_visitors_1h for [p_lo, p_hi), the rows committed up to
-- p_cutoff).
CREATE FUNCTION metric.wifi_visitors_fill(p_edges timestamptz[], p_lo timestamptz,
                                          p_hi timestamptz, p_cutoff timestamptz)
RETURNS TABLE (hour timestamptz, site_id text, device_id text, visitors integer,
               associations integer)
LANGUAGE sql STABLE AS $$
    SELECT * FROM metric.wifi_visitors_hours(p_lo, p_hi, NULL, p_cutoff)
$$;
