-- Add a batch of messages in one round trip, inside the caller's transaction.
--
-- `locked` takes a transaction-scoped advisory lock per distinct aggregate ($1: hashes, sorted
-- by the caller, so concurrent writers cannot deadlock). Every row of the insert joins the
-- finished lock aggregate, so the identity (sequence) values are drawn only after all locks
-- are granted: writers of one aggregate are serialised until commit, and sequence order
-- equals commit order per aggregate. The final SELECT notifies the relay once per shard
-- ($14: the shards, empty when notifications are off); Postgres delivers it at commit.
WITH locked AS MATERIALIZED (
    SELECT count(pg_advisory_xact_lock(h)) AS n FROM unnest($1::bigint[]) AS h
), inserted AS (
    INSERT INTO {outbox} (shard, {message_columns})
    SELECT m.shard, m.id, m.aggregate_type, m.aggregate_id, m.event_type, m.topic, m.key,
           m.headers::jsonb, m.payload, m.content_type, m.created_at
    FROM unnest(
            $2::int[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
            $9::text[], $10::bytea[], $11::text[], $12::timestamptz[]
         ) WITH ORDINALITY AS m(shard, id, aggregate_type, aggregate_id, event_type, topic, key,
                                headers, payload, content_type, created_at, ord)
    CROSS JOIN locked
    ORDER BY m.ord
)
SELECT pg_notify($13, s::text) FROM unnest($14::int[]) AS s
