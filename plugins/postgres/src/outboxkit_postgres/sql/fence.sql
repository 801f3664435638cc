-- A fenced change of shard $1's messages $4 (seqs), made by the lease ($1 shard, $2 owner,
-- $3 token). The lease row is locked FOR SHARE, so a takeover waits for this statement's
-- transaction, and a takeover committed meanwhile is re-checked (owner/token no longer
-- match). The change below runs only if the lease is held; the result says whether it was.
WITH lease AS MATERIALIZED (
    SELECT true AS held
    FROM {leases}
    WHERE shard = $1 AND owner = $2 AND token = $3 AND expires_at > clock_timestamp()
    FOR SHARE
),
{change}
SELECT EXISTS (SELECT FROM lease) AS held
