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

-- The writer: one round trip for any number of messages. It takes a transaction-scoped
-- advisory lock per distinct aggregate (sorted, so writers cannot deadlock) BEFORE drawing
-- sequence values, so that for one aggregate sequence order equals commit order.
CREATE OR REPLACE FUNCTION {{schema}}.{{table}}_add(
    p_hashes bigint[], p_ids uuid[], p_aggregate_types text[], p_aggregate_ids text[],
    p_event_types text[], p_topics text[], p_keys text[], p_headers text[], p_payloads bytea[],
    p_content_types text[], p_created_at timestamptz[], p_notify boolean
) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    k bigint;
    s integer;
BEGIN
    FOR k IN SELECT DISTINCT h FROM unnest(p_hashes) AS h ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(k);
    END LOOP;
    INSERT INTO {{schema}}.{{table}} (
        shard, id, aggregate_type, aggregate_id, event_type, topic, key, headers, payload,
        content_type, created_at)
    SELECT ((m.h % {{shard_count}}) + {{shard_count}}) % {{shard_count}}, m.id, m.at, m.aid,
           m.et, m.tp, m.k, m.hd::jsonb, m.pl, m.ct, m.ca
    FROM unnest(p_hashes, p_ids, p_aggregate_types, p_aggregate_ids, p_event_types, p_topics,
                p_keys, p_headers, p_payloads, p_content_types, p_created_at)
         WITH ORDINALITY AS m(h, id, at, aid, et, tp, k, hd, pl, ct, ca, n)
    ORDER BY m.n;
    IF p_notify THEN
        FOR s IN SELECT DISTINCT ((h % {{shard_count}}) + {{shard_count}}) % {{shard_count}}
                 FROM unnest(p_hashes) AS h LOOP
            PERFORM pg_notify('{{channel}}', s::text);
        END LOOP;
    END IF;
END
$fn$;
