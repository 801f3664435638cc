-- Extend the leases ($1 shards, $2 owners, $3 tokens) still held, by $4 seconds.
UPDATE {leases} AS l
SET expires_at = clock_timestamp() + make_interval(secs => $4::float8)
FROM unnest($1::int[], $2::text[], $3::bigint[]) AS r(shard, owner, token)
WHERE l.shard = r.shard AND l.owner = r.owner AND l.token = r.token
  AND l.expires_at > clock_timestamp()
RETURNING l.shard
