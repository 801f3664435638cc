-- outboxkit Postgres schema, version 1.
-- Tokens {{schema}}, {{table}}, {{channel}}, {{shard_count}} are replaced by validated values;
-- {{schema}} and {{table}}[_suffix] become quoted identifiers.

CREATE TABLE IF NOT EXISTS {{schema}}.{{table}} (
    shard          integer     NOT NULL,
    seq            bigint      GENERATED ALWAYS AS IDENTITY,
    id             uuid        NOT NULL,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    event_type     text        NOT NULL,
    topic          text,
    key            text,
    headers        jsonb       NOT NULL,
    payload        bytea       NOT NULL,
    content_type   text        NOT NULL,
    created_at     timestamptz NOT NULL,
    attempts       integer     NOT NULL DEFAULT 0,
    available_at   timestamptz,
    last_error     text,
    PRIMARY KEY (shard, seq)
) WITH (
    fillfactor = 90,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02
);

-- Aggregates in retry backoff: the claim skips them from their first delayed message on.
CREATE INDEX IF NOT EXISTS {{table}}_delayed
    ON {{schema}}.{{table}} (shard, aggregate_id, seq) WHERE available_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS {{schema}}.{{table}}_dead (
    id             uuid        PRIMARY KEY,
    shard          integer     NOT NULL,
    seq            bigint      NOT NULL,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    event_type     text        NOT NULL,
    topic          text,
    key            text,
    headers        jsonb       NOT NULL,
    payload        bytea       NOT NULL,
    content_type   text        NOT NULL,
    created_at     timestamptz NOT NULL,
    attempts       integer     NOT NULL,
    error          text        NOT NULL,
    failed_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS {{schema}}.{{table}}_leases (
    shard      integer PRIMARY KEY,
    owner      text,
    token      bigint  NOT NULL DEFAULT 0,
    expires_at timestamptz
);

INSERT INTO {{schema}}.{{table}}_leases (shard)
SELECT generate_series(0, {{shard_count}} - 1)
ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS {{schema}}.{{table}}_instances (
    owner      text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

-- The writer's <table>_add function: 0004_writer_lock_class.sql.
