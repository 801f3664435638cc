SELECT count(*) AS pending,
       extract(epoch FROM now() - min(enqueued_at))::float8 AS oldest_pending_age,
       (SELECT count(*) FROM {dead}) AS dead_letters
FROM {outbox}
