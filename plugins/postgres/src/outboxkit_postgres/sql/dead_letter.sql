moved AS (
    DELETE FROM {outbox}
    WHERE shard = $1 AND seq = ANY($4::bigint[]) AND EXISTS (SELECT FROM lease)
    RETURNING *
),
buried AS (
    INSERT INTO {dead} (shard, {message_columns}, attempts, error, failed_at)
    SELECT shard, {message_columns}, attempts + 1, $5::text, clock_timestamp()
    FROM moved
    ORDER BY seq
)
