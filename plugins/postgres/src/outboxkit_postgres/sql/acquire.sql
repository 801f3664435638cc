-- Take shard $1 for owner $2 for $3 seconds (database clock): a free or expired lease gets
-- the next token; a live lease of the same owner is extended with its token; a live lease of
-- another owner is left alone (no row returned).
INSERT INTO {leases} AS l (shard, owner, token, expires_at)
VALUES ($1, $2, 1, clock_timestamp() + make_interval(secs => $3::float8))
ON CONFLICT (shard) DO UPDATE
SET owner = EXCLUDED.owner,
    token = CASE WHEN l.owner = EXCLUDED.owner AND l.expires_at > clock_timestamp()
                 THEN l.token ELSE l.token + 1 END,
    expires_at = EXCLUDED.expires_at
WHERE l.owner IS NULL OR l.expires_at <= clock_timestamp() OR l.owner = EXCLUDED.owner
RETURNING token
