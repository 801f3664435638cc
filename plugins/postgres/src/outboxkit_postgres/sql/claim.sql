-- Pending messages of shard $1 in sequence order, at most $2, without marking them.
--
-- An aggregate is skipped from its first row that is not yet due (a retry's backoff), so no
-- later message of it overtakes. `blocked` comes from the small partial index of delayed rows
-- and is computed once; the outer scan walks the (shard, seq) primary key in order and stops
-- after $2 rows, so the cost does not grow with the backlog. No high-water mark: a row that
-- commits late with a lower seq is simply found by the next claim.
WITH blocked AS MATERIALIZED (
    SELECT aggregate_id, min(seq) AS since
    FROM {outbox}
    WHERE shard = $1 AND available_at > now()
    GROUP BY aggregate_id
)
SELECT o.seq, o.attempts, o.id, o.aggregate_type, o.aggregate_id, o.event_type, o.topic,
       o.key, o.headers, o.payload, o.content_type, o.created_at
FROM {outbox} AS o
WHERE o.shard = $1
  AND (NOT EXISTS (SELECT FROM blocked)
       OR NOT EXISTS (SELECT FROM blocked AS b
                      WHERE b.aggregate_id = o.aggregate_id AND b.since <= o.seq))
ORDER BY o.seq
LIMIT $2
