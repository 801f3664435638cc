-- outboxkit Postgres schema, version 3: dead letters found by aggregate. With
-- on_dead_letter=block the claim skips every message that comes after a dead letter of its
-- aggregate: one probe of this index per claimed row (the dead-letter table stays small).
CREATE INDEX IF NOT EXISTS {{table}}_dead_aggregate
    ON {{schema}}.{{table}}_dead (shard, aggregate_id, seq);
