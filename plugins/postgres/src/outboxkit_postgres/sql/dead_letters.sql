SELECT shard, id, aggregate_type, aggregate_id, event_type, topic, key, headers, payload,
       content_type, created_at, attempts, error, failed_at
FROM {dead}
ORDER BY seq
LIMIT $1
