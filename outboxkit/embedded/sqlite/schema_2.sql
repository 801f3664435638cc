-- outboxkit SQLite schema, version 2: dead letters keep the position they had in the outbox,
-- so a replay puts them back in their place and the claim can skip the messages after a
-- dead letter of their aggregate (on_dead_letter=block). Letters of version 1 have none
-- (NULL): they block every pending message of their aggregate and replay as new messages.
ALTER TABLE {table}_dead ADD COLUMN position INTEGER;
CREATE INDEX IF NOT EXISTS {table}_dead_aggregate ON {table}_dead (shard, aggregate_id, position);
