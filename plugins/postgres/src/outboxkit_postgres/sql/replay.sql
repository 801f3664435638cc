-- Move dead letters ($1: ids, or NULL for all) back to the outbox as fresh messages.
WITH moved AS (
    DELETE FROM {dead}
    WHERE $1::uuid[] IS NULL OR id = ANY($1::uuid[])
    RETURNING *
), replayed AS (
    INSERT INTO {outbox} (shard, {message_columns})
    SELECT shard, {message_columns} FROM moved ORDER BY seq
    RETURNING shard
)
SELECT count(*) AS replayed FROM replayed
