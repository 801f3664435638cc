retried AS (
    UPDATE {outbox}
    SET attempts = attempts + 1,
        available_at = clock_timestamp() + make_interval(secs => $5::float8),
        last_error = $6::text
    WHERE shard = $1 AND seq = ANY($4::bigint[]) AND EXISTS (SELECT FROM lease)
)
