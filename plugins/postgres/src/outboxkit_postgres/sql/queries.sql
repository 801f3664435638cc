-- Queries of the pg store. Each starts with "-- name: <name>". Tokens {{...}} as in migrations.
-- Fragments, pasted where a query names them:
-- {{fence}} is the lease check CTE shared by the fenced statements ($1 shard, $2 owner, $3 token);
-- {{held_leases}} locks the lease rows ($1 shards, $2 owners, $3 tokens) still held, in shard
-- order, for the statements that lock several (`renew`, `ack_shards`): one order, no deadlock.
-- {{after_dead_letter}} in `claim` and `claim_shards` is replaced by the store: with
-- on_dead_letter=block by the `after_dead_letter` section, which skips every row that comes
-- after a dead letter of its aggregate (one probe of the <table>_dead_aggregate index per
-- row), never one before it; with on_dead_letter=skip by nothing.

-- name: fence
held AS (
    SELECT shard FROM {{schema}}.{{table}}_leases
    WHERE shard = $1 AND owner = $2 AND token = $3 AND expires_at > now()
    FOR UPDATE
)

-- name: held_leases
held AS (
    SELECT l.shard
    FROM {{schema}}.{{table}}_leases AS l
    JOIN unnest($1::integer[], $2::text[], $3::bigint[]) AS f(shard, owner, token)
      ON l.shard = f.shard AND l.owner = f.owner AND l.token = f.token
    WHERE l.expires_at > now()
    ORDER BY l.shard
    FOR UPDATE OF l
)

-- name: after_dead_letter
AND NOT EXISTS (
      SELECT 1 FROM {{schema}}.{{table}}_dead AS x
      WHERE x.shard = o.shard AND x.aggregate_id = o.aggregate_id AND x.seq < o.seq)

-- name: schema_version
SELECT value FROM {{schema}}.{{table}}_meta WHERE key = 'schema_version'

-- name: shard_count
SELECT value::integer FROM {{schema}}.{{table}}_meta WHERE key = 'shard_count'

-- name: claim
SELECT o.seq, o.id, o.aggregate_type, o.aggregate_id, o.event_type, o.topic, o.key,
       o.headers::text, o.payload, o.content_type, o.created_at, o.attempts
FROM {{schema}}.{{table}} AS o
WHERE o.shard = $1
  AND NOT EXISTS (
      SELECT 1 FROM {{schema}}.{{table}} AS d
      WHERE d.shard = $1 AND d.available_at IS NOT NULL AND d.available_at > now()
        AND d.aggregate_id = o.aggregate_id AND d.seq <= o.seq)
  {{after_dead_letter}}
ORDER BY o.seq
LIMIT $2

-- name: claim_shards
-- The claims of several shards in one round trip: for each ($1[i], $2[i]) the rows the
-- `claim` query returns for that shard and limit, each shard through the primary key.
SELECT s.shard, c.*
FROM unnest($1::integer[], $2::integer[]) WITH ORDINALITY AS s(shard, lim, n)
CROSS JOIN LATERAL (
    SELECT o.seq, o.id, o.aggregate_type, o.aggregate_id, o.event_type, o.topic, o.key,
           o.headers::text AS headers, o.payload, o.content_type, o.created_at, o.attempts
    FROM {{schema}}.{{table}} AS o
    WHERE o.shard = s.shard
      AND NOT EXISTS (
          SELECT 1 FROM {{schema}}.{{table}} AS d
          WHERE d.shard = s.shard AND d.available_at IS NOT NULL AND d.available_at > now()
            AND d.aggregate_id = o.aggregate_id AND d.seq <= o.seq)
      {{after_dead_letter}}
    ORDER BY o.seq
    LIMIT s.lim
) AS c
ORDER BY s.n, c.seq

-- name: ack
WITH {{fence}},
gone AS (
    DELETE FROM {{schema}}.{{table}}
    WHERE shard = (SELECT shard FROM held) AND seq = ANY($4::bigint[])
    RETURNING 1
)
SELECT (SELECT count(*) FROM held) AS held, (SELECT count(*) FROM gone) AS changed

-- name: ack_shards
-- The acks of several shards in one statement: the leases still held are locked (in shard
-- order), then the messages ($4 shard, $5 seq) of those shards are deleted. Returns the
-- shards whose lease was held.
WITH {{held_leases}},
gone AS (
    DELETE FROM {{schema}}.{{table}} AS o
    USING unnest($4::integer[], $5::bigint[]) AS a(shard, seq)
    WHERE o.shard = a.shard AND o.seq = a.seq AND a.shard IN (SELECT shard FROM held)
)
SELECT shard FROM held

-- name: retry
WITH {{fence}},
later AS (
    UPDATE {{schema}}.{{table}}
    SET attempts = attempts + 1, last_error = $5,
        available_at = now() + make_interval(secs => $6)
    WHERE shard = (SELECT shard FROM held) AND seq = ANY($4::bigint[])
    RETURNING 1
)
SELECT (SELECT count(*) FROM held) AS held, (SELECT count(*) FROM later) AS changed

-- name: dead_letter
WITH {{fence}},
gone AS (
    DELETE FROM {{schema}}.{{table}}
    WHERE shard = (SELECT shard FROM held) AND seq = ANY($4::bigint[])
    RETURNING *
),
dead AS (
    INSERT INTO {{schema}}.{{table}}_dead (
        id, shard, seq, aggregate_type, aggregate_id, event_type, topic, key, headers, payload,
        content_type, created_at, attempts, error)
    SELECT id, shard, seq, aggregate_type, aggregate_id, event_type, topic, key, headers,
           payload, content_type, created_at, attempts + 1, $5
    FROM gone
    ON CONFLICT (id) DO UPDATE SET error = EXCLUDED.error, attempts = EXCLUDED.attempts,
        seq = EXCLUDED.seq, failed_at = now()
    RETURNING 1
)
SELECT (SELECT count(*) FROM held) AS held, (SELECT count(*) FROM dead) AS changed

-- name: acquire
INSERT INTO {{schema}}.{{table}}_leases AS l (shard, owner, token, expires_at)
VALUES ($1, $2, 1, now() + make_interval(secs => $3))
ON CONFLICT (shard) DO UPDATE SET
    owner = EXCLUDED.owner,
    expires_at = EXCLUDED.expires_at,
    token = CASE WHEN l.owner = EXCLUDED.owner AND l.expires_at > now()
                 THEN l.token ELSE l.token + 1 END
WHERE l.owner IS NULL OR l.expires_at IS NULL OR l.expires_at <= now()
   OR l.owner = EXCLUDED.owner
RETURNING l.token

-- name: renew
WITH {{held_leases}}
UPDATE {{schema}}.{{table}}_leases AS l
SET expires_at = now() + make_interval(secs => $4)
FROM held
WHERE l.shard = held.shard
RETURNING l.shard, l.owner, l.token

-- name: release
UPDATE {{schema}}.{{table}}_leases AS l
SET owner = NULL, expires_at = NULL
FROM unnest($1::integer[], $2::text[], $3::bigint[]) AS x(shard, owner, token)
WHERE l.shard = x.shard AND l.owner = x.owner AND l.token = x.token

-- name: leases
SELECT shard, owner, token, extract(epoch FROM expires_at - now())::float8 AS expires_in
FROM {{schema}}.{{table}}_leases
ORDER BY shard

-- name: heartbeat
WITH me AS (
    INSERT INTO {{schema}}.{{table}}_instances (owner, expires_at)
    VALUES ($1, now() + make_interval(secs => $2))
    ON CONFLICT (owner) DO UPDATE SET expires_at = EXCLUDED.expires_at
    RETURNING owner
)
SELECT owner FROM me
UNION
SELECT owner FROM {{schema}}.{{table}}_instances WHERE expires_at > now() AND owner <> $1
ORDER BY 1

-- name: leave
DELETE FROM {{schema}}.{{table}}_instances WHERE owner = $1 OR expires_at < now() - interval '1 hour'

-- name: status
SELECT (SELECT count(*) FROM {{schema}}.{{table}}) AS pending,
       (SELECT CASE WHEN min(created_at) IS NOT NULL  -- >= 0 despite writer clock skew
                    THEN greatest(0, extract(epoch FROM now() - min(created_at)))::float8 END
        FROM {{schema}}.{{table}}) AS oldest,
       (SELECT count(*) FROM {{schema}}.{{table}}_dead) AS dead,
       (SELECT coalesce(array_agg(owner ORDER BY owner), '{}')
        FROM {{schema}}.{{table}}_instances WHERE expires_at > now()) AS instances,
       (SELECT count(DISTINCT aggregate_id) FROM {{schema}}.{{table}}_dead) AS blocked,
       (SELECT coalesce(array_agg(aggregate_id ORDER BY aggregate_id), '{}')
        FROM (SELECT DISTINCT aggregate_id FROM {{schema}}.{{table}}_dead
              ORDER BY aggregate_id LIMIT $1) AS s) AS blocked_sample,
       -- Pending rows after the first dead letter of their aggregate.
       (SELECT count(*)
        FROM {{schema}}.{{table}} AS o
        JOIN (SELECT shard, aggregate_id, min(seq) AS seq
              FROM {{schema}}.{{table}}_dead GROUP BY shard, aggregate_id) AS b
          ON o.shard = b.shard AND o.aggregate_id = b.aggregate_id AND o.seq > b.seq) AS parked

-- name: dead_letters
SELECT id, aggregate_type, aggregate_id, event_type, topic, key, headers::text, payload,
       content_type, created_at, shard, error, attempts, failed_at
FROM {{schema}}.{{table}}_dead
ORDER BY failed_at, seq
LIMIT $1

-- name: dead_letters_found
-- Which of the ids $1 are dead letters; locks them until the transaction ends, so the
-- `replay` or `discard` that follows in it finds them all.
SELECT id FROM {{schema}}.{{table}}_dead WHERE id = ANY($1::uuid[]) FOR UPDATE

-- name: replay
-- Dead letters ($1 ids, all if NULL) back into the outbox with the sequence number they had,
-- so each is claimed in its original place in its aggregate's order; wakes their shards.
WITH back AS (
    DELETE FROM {{schema}}.{{table}}_dead
    WHERE $1::uuid[] IS NULL OR id = ANY($1::uuid[])
    RETURNING *
),
again AS (
    INSERT INTO {{schema}}.{{table}} (
        shard, seq, id, aggregate_type, aggregate_id, event_type, topic, key, headers,
        payload, content_type, created_at)
    OVERRIDING SYSTEM VALUE
    SELECT shard, seq, id, aggregate_type, aggregate_id, event_type, topic, key, headers,
           payload, content_type, created_at
    FROM back ORDER BY seq
    RETURNING shard
),
woken AS (
    SELECT pg_notify('{{channel}}', shard::text) FROM (SELECT DISTINCT shard FROM again) AS s
)
SELECT (SELECT count(*) FROM again) AS changed, (SELECT count(*) FROM woken) AS woken

-- name: discard
-- Delete dead letters: $1 ids (all if NULL) that failed more than $2 seconds ago (any time
-- if NULL); wakes their shards (their aggregates are no longer blocked).
WITH gone AS (
    DELETE FROM {{schema}}.{{table}}_dead
    WHERE ($1::uuid[] IS NULL OR id = ANY($1::uuid[]))
      AND ($2::float8 IS NULL OR failed_at < now() - make_interval(secs => $2::float8))
    RETURNING shard
),
woken AS (
    SELECT pg_notify('{{channel}}', shard::text) FROM (SELECT DISTINCT shard FROM gone) AS s
)
SELECT (SELECT count(*) FROM gone) AS changed, (SELECT count(*) FROM woken) AS woken

-- name: add
-- Typed parameters, so that drivers that send untyped values (psycopg, Django) pick the
-- function as asyncpg does.
SELECT {{schema}}.{{table}}_add(
    $1::bigint[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
    $8::text[], $9::bytea[], $10::text[], $11::timestamptz[], $12::boolean)

-- name: add_one
-- One message, as the <table>_add function does it but as one plain statement (about a
-- third cheaper than the PL/pgSQL call): the MATERIALIZED CTE takes the aggregate's
-- advisory lock (outboxkit's class key, the high 32 bits of the hash) before the INSERT's
-- projection draws the sequence value (the projection needs the CTE's row first), so for
-- one aggregate sequence order equals commit order. The shard is computed once, for the
-- INSERT and the NOTIFY, without RETURNING (so writers need no SELECT on the outbox).
-- A missing shard count yields a NULL shard, which the NOT NULL constraint rejects.
WITH locked AS MATERIALIZED (
    SELECT pg_advisory_xact_lock({{writer_lock}}, ($1::bigint >> 32)::integer)
), target AS MATERIALIZED (
    SELECT (($1::bigint % n.count) + n.count) % n.count AS shard
    FROM locked, (
        SELECT (SELECT value::integer FROM {{schema}}.{{table}}_meta
                WHERE key = 'shard_count') AS count
    ) AS n
), added AS (
    INSERT INTO {{schema}}.{{table}} (
        shard, id, aggregate_type, aggregate_id, event_type, topic, key, headers, payload,
        content_type, created_at)
    SELECT target.shard, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $11
    FROM target
)
SELECT pg_notify('{{channel}}', shard::text) FROM target WHERE $12::boolean

-- name: gauges
-- The relay's backlog gauges, cheap at any backlog: rows are counted exactly up to 10,000
-- (a LIMITed scan), above that PostgreSQL's live-tuple statistics stand in (an estimate);
-- the oldest pending message is the oldest of each shard's first row by the primary key.
WITH pending AS (
    SELECT count(*) AS n FROM (SELECT 1 FROM {{schema}}.{{table}} LIMIT 10001) AS s
), dead AS (
    SELECT count(*) AS n FROM (SELECT 1 FROM {{schema}}.{{table}}_dead LIMIT 10001) AS s
)
SELECT CASE WHEN pending.n <= 10000 THEN pending.n
            ELSE greatest(pending.n, (SELECT n_live_tup FROM pg_stat_user_tables
                                      WHERE relid = '{{schema}}.{{table}}'::regclass))
       END AS pending,
       pending.n > 10000 AS pending_estimated,
       CASE WHEN dead.n <= 10000 THEN dead.n
            ELSE greatest(dead.n, (SELECT n_live_tup FROM pg_stat_user_tables
                                   WHERE relid = '{{schema}}.{{table}}_dead'::regclass))
       END AS dead,
       (SELECT count(*) FROM (SELECT DISTINCT aggregate_id FROM {{schema}}.{{table}}_dead
                              LIMIT 10001) AS s) AS blocked,
       (SELECT greatest(0, extract(epoch FROM now() - min(first.created_at)))::float8
        FROM {{schema}}.{{table}}_leases AS l
        CROSS JOIN LATERAL (
            SELECT o.created_at FROM {{schema}}.{{table}} AS o
            WHERE o.shard = l.shard ORDER BY o.seq LIMIT 1
        ) AS first) AS oldest
FROM pending, dead

-- name: slot_acquire
-- Take the slot's lease if free or expired (a new token), or extend our own.
INSERT INTO {{schema}}.{{table}}_slot_lease AS l (slot, owner, token, expires_at)
VALUES ($1, $2, 1, now() + make_interval(secs => $3))
ON CONFLICT (slot) DO UPDATE SET
    owner = EXCLUDED.owner,
    expires_at = EXCLUDED.expires_at,
    token = CASE WHEN l.owner = EXCLUDED.owner AND l.expires_at > now() THEN l.token
                 ELSE l.token + 1 END
WHERE l.owner IS NULL OR l.owner = EXCLUDED.owner OR l.expires_at <= now()
RETURNING token

-- name: slot_renew
UPDATE {{schema}}.{{table}}_slot_lease
SET expires_at = now() + make_interval(secs => $4), pending_since = $5
WHERE slot = $1 AND owner = $2 AND token = $3 AND expires_at > now()
RETURNING token

-- name: slot_release
UPDATE {{schema}}.{{table}}_slot_lease SET owner = NULL, expires_at = NULL, pending_since = NULL
WHERE slot = $1 AND owner = $2 AND token = $3

-- name: slot_fence
SELECT 1 FROM {{schema}}.{{table}}_slot_lease
WHERE slot = $1 AND owner = $2 AND token = $3 AND expires_at > now()
FOR UPDATE

-- name: slot_status
SELECT owner, extract(epoch FROM expires_at - now())::float8 AS expires_in,
       extract(epoch FROM now() - pending_since)::float8 AS pending_age
FROM {{schema}}.{{table}}_slot_lease WHERE slot = $1

-- name: wal_dead_letter
-- Dead letters of the WAL-only relay (fenced by the slot lease): each takes the next value
-- of the outbox sequence, so the messages parked after it in the table come after it.
WITH held AS (
    SELECT 1 FROM {{schema}}.{{table}}_slot_lease
    WHERE slot = $1 AND owner = $2 AND token = $3 AND expires_at > now()
    FOR UPDATE
), rows AS (
    SELECT r.*, nextval(pg_get_serial_sequence('{{schema}}.{{table}}', 'seq')) AS seq
    FROM (SELECT * FROM unnest($4::uuid[], $5::integer[], $6::text[], $7::text[], $8::text[],
                               $9::text[], $10::text[], $11::text[], $12::bytea[], $13::text[],
                               $14::timestamptz[], $15::integer[])
              WITH ORDINALITY AS u(id, shard, aggregate_type, aggregate_id, event_type, topic,
                                   key, headers, payload, content_type, created_at, attempts, i)
          ORDER BY i) AS r
    WHERE EXISTS (SELECT 1 FROM held)
), dead AS (
    INSERT INTO {{schema}}.{{table}}_dead (
        id, shard, seq, aggregate_type, aggregate_id, event_type, topic, key, headers, payload,
        content_type, created_at, attempts, error)
    SELECT id, shard, seq, aggregate_type, aggregate_id, event_type, topic, key,
           headers::jsonb, payload, content_type, created_at, attempts, $16
    FROM rows
    ON CONFLICT (id) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM held) AS held, (SELECT count(*) FROM dead) AS changed

-- name: wal_table_aggregates
-- Aggregates whose messages wait in the table (parked or replayed): the WAL-only relay
-- parks their later messages behind them. With on_dead_letter=block also those with a
-- dead letter ($1).
SELECT DISTINCT aggregate_id FROM {{schema}}.{{table}}
UNION
SELECT DISTINCT aggregate_id FROM {{schema}}.{{table}}_dead WHERE $1
