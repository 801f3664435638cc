acked AS (
    DELETE FROM {outbox}
    WHERE shard = $1 AND seq = ANY($4::bigint[]) AND EXISTS (SELECT FROM lease)
)
