-- Mark owner $1 alive for $2 seconds, forget instances expired for a minute, and return the
-- live instances. The upserted row is not in this statement's snapshot, hence the UNION.
WITH beat AS (
    INSERT INTO {instances} (owner, expires_at)
    VALUES ($1, clock_timestamp() + make_interval(secs => $2::float8))
    ON CONFLICT (owner) DO UPDATE SET expires_at = EXCLUDED.expires_at
    RETURNING owner
), forgotten AS (
    DELETE FROM {instances}
    WHERE expires_at < clock_timestamp() - interval '1 minute' AND owner <> $1
)
SELECT owner FROM beat
UNION
SELECT owner FROM {instances} WHERE expires_at > clock_timestamp() AND owner <> $1
ORDER BY owner
