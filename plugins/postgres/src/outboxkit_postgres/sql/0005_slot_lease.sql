-- outboxkit Postgres schema, version 5: the lease of a replication slot (log tailing,
-- docs/log-tailing.md). One relay instance at a time reads a slot; the token grows with every
-- new holder and fences its dead-letter and park writes. `pending_since` is the commit time
-- of the oldest transaction the holder read but has not confirmed (status shows the lag).
CREATE TABLE IF NOT EXISTS {{schema}}.{{table}}_slot_lease (
    slot          text        PRIMARY KEY,
    owner         text,
    token         bigint      NOT NULL DEFAULT 0,
    expires_at    timestamptz,
    pending_since timestamptz
);
