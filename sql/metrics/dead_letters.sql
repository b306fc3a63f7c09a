-- Dead letters counted per local day of zone p_tz (p_edges: the days' starts, then the end
-- of the last), device and reason: what dead_letter_days stores.
CREATE FUNCTION metric.dead_letter_days_fill(p_edges timestamptz[], p_lo timestamptz,
                                             p_hi timestamptz, p_tz text)
RETURNS TABLE (day date, tz text, day_start timestamptz, device_id text, reason text,
               n integer)
LANGUAGE sql STABLE AS $$
    SELECT (p_edges[x.i] AT TIME ZONE p_tz)::date, p_tz, p_edges[x.i], x.device_id, x.reason,
           x.n::integer
    FROM (SELECT width_bucket(d.received_at, p_edges) AS i, d.device_id, d.reason,
                 count(*) AS n
          FROM dead_letters d
          WHERE d.received_at >= p_lo AND d.received_at < p_hi
          GROUP BY 1, 2, 3) x
$$;
