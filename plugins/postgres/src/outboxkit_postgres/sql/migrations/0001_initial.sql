-- outboxkit-postgres schema version 1.
--
-- The outbox is a queue table: rows are inserted by writers and deleted by primary key in
-- small batches once published, so autovacuum is made to run after a fixed number of dead
-- rows instead of a fraction of the table. fillfactor leaves room for the rare retry update.

CREATE TABLE {meta} (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    version integer NOT NULL,
    shard_count integer NOT NULL CHECK (shard_count > 0),
    migrated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {outbox} (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    shard integer NOT NULL,
    id uuid NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id text NOT NULL,
    event_type text NOT NULL,
    topic text,
    key text,
    headers jsonb NOT NULL,
    payload bytea NOT NULL,
    content_type text NOT NULL,
    created_at timestamptz NOT NULL,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    available_at timestamptz,          -- NULL: due now; set by a retry
    last_error text,
    CONSTRAINT {claim_index} PRIMARY KEY (shard, seq),
    CONSTRAINT {id_index} UNIQUE (id)
) WITH (
    fillfactor = 90,
    autovacuum_vacuum_scale_factor = 0.0,
    autovacuum_vacuum_threshold = 2000,
    autovacuum_vacuum_insert_scale_factor = 0.0,
    autovacuum_vacuum_insert_threshold = 20000,
    autovacuum_analyze_scale_factor = 0.02
);

-- Aggregates waiting for a retry: the claim skips them from their first delayed row.
CREATE INDEX {delayed_index} ON {outbox} (shard, aggregate_id, seq)
    WHERE available_at IS NOT NULL;

CREATE TABLE {dead} (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    shard integer NOT NULL,
    id uuid NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id text NOT NULL,
    event_type text NOT NULL,
    topic text,
    key text,
    headers jsonb NOT NULL,
    payload bytea NOT NULL,
    content_type text NOT NULL,
    created_at timestamptz NOT NULL,
    attempts integer NOT NULL,
    error text NOT NULL,
    failed_at timestamptz NOT NULL
);

CREATE INDEX {dead_id_index} ON {dead} (id);

-- One row per shard; owner NULL when free. token only ever grows (fencing).
CREATE TABLE {leases} (
    shard integer PRIMARY KEY,
    owner text,
    token bigint NOT NULL DEFAULT 0,
    expires_at timestamptz
) WITH (fillfactor = 50);

CREATE TABLE {instances} (
    owner text PRIMARY KEY,
    expires_at timestamptz NOT NULL
) WITH (fillfactor = 50);
