-- One row per shard 0..$1-1, by shard; expires_in in seconds by the database clock.
SELECT s.shard, l.owner, coalesce(l.token, 0) AS token,
       CASE WHEN l.owner IS NOT NULL
            THEN extract(epoch FROM l.expires_at - clock_timestamp())::float8 END AS expires_in
FROM generate_series(0, $1::int - 1) AS s(shard)
LEFT JOIN {leases} AS l ON l.shard = s.shard
ORDER BY s.shard
