-- Free the leases ($1 shards, $2 owners, $3 tokens) still held with the same token; the token
-- stays, so the next owner gets a higher one.
UPDATE {leases} AS l
SET owner = NULL, expires_at = NULL
FROM unnest($1::int[], $2::text[], $3::bigint[]) AS r(shard, owner, token)
WHERE l.shard = r.shard AND l.owner = r.owner AND l.token = r.token
