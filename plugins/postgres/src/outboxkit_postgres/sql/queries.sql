-- Queries of the pg store. Each starts with "-- name: <name>". Tokens {{...}} as in migrations.
-- Fragments, pasted where a query names them:
-- {{fence}} is the lease check CTE shared by the fenced statements ($1 shard, $2 owner, $3 token);
-- {{held_leases}} locks the lease rows ($1 shards, $2 owners, $3 tokens) still held, in shard
-- order, for the statements that lock several (`renew`, `ack_shards`): one order, no deadlock.

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
        failed_at = now()
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
        FROM {{schema}}.{{table}}_instances WHERE expires_at > now()) AS instances

-- name: dead_letters
SELECT id, aggregate_type, aggregate_id, event_type, topic, key, headers::text, payload,
       content_type, created_at, shard, error, attempts, failed_at
FROM {{schema}}.{{table}}_dead
ORDER BY failed_at, seq
LIMIT $1

-- name: replay
WITH back AS (
    DELETE FROM {{schema}}.{{table}}_dead
    WHERE $1::uuid[] IS NULL OR id = ANY($1::uuid[])
    RETURNING *
),
again AS (
    INSERT INTO {{schema}}.{{table}} (
        shard, id, aggregate_type, aggregate_id, event_type, topic, key, headers, payload,
        content_type, created_at)
    SELECT shard, id, aggregate_type, aggregate_id, event_type, topic, key, headers, payload,
           content_type, created_at
    FROM back ORDER BY seq
    RETURNING 1
)
SELECT count(*) FROM again

-- name: add
SELECT {{schema}}.{{table}}_add($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)

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
