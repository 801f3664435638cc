-- The inbox of a consumer (outboxkit inbox migrate --inbox pg). Idempotent.
CREATE SCHEMA IF NOT EXISTS {{schema}};
CREATE TABLE IF NOT EXISTS {{schema}}.{{table}} (
    id uuid PRIMARY KEY,
    processed_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {{schema}}.{{table}}_aggregates (
    aggregate_type text NOT NULL,
    aggregate_id text NOT NULL,
    last_sequence bigint NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
);
CREATE TABLE IF NOT EXISTS {{schema}}.{{table}}_parked (
    id uuid PRIMARY KEY,
    aggregate_type text NOT NULL,
    aggregate_id text NOT NULL,
    event_type text NOT NULL,
    sequence bigint,
    last_sequence bigint,
    topic text,
    headers text NOT NULL,
    payload bytea NOT NULL,
    content_type text NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now()
);
