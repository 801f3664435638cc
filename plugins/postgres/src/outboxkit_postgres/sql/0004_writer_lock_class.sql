-- outboxkit Postgres schema, version 4: the writer's advisory locks use outboxkit's own class
-- key ({{writer_lock}}, first key of the two-key form), so they cannot collide with an
-- application's advisory locks (earlier versions locked the aggregate hash in the one-key
-- space). The function was in 0001 until then.

-- The writer: one round trip for any number of messages. It takes a transaction-scoped
-- advisory lock per distinct aggregate key (the high 32 bits of the aggregate hash; sorted,
-- so writers cannot deadlock) BEFORE drawing sequence values, so that for one aggregate
-- sequence order equals commit order.
CREATE OR REPLACE FUNCTION {{schema}}.{{table}}_add(
    p_hashes bigint[], p_ids uuid[], p_aggregate_types text[], p_aggregate_ids text[],
    p_event_types text[], p_topics text[], p_keys text[], p_headers text[], p_payloads bytea[],
    p_content_types text[], p_created_at timestamptz[], p_notify boolean
) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    k integer;
    s integer;
BEGIN
    FOR k IN SELECT DISTINCT (h >> 32)::integer FROM unnest(p_hashes) AS h ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock({{writer_lock}}, k);
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
