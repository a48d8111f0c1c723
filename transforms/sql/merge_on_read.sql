-- name:  merge_on_read
-- grain: one row per run (tenant_id, run_id), in the columns of run_parts
-- unit:  as run_parts
-- definition: merge_parts.sql over all current parts, computed without
--   regrouping every run: the base rows (`base_parts`, at most one row per
--   run) of the runs that no newer part touches are already merged, so only
--   the touched runs go through merge_parts.sql (`merged_touched`, over
--   touched_parts.sql). The result equals merge_parts.sql over base and
--   newer parts together; a test checks it on generated data.
-- The touched runs (few) come first: a hash join holds its first side in
-- memory, and the base (every run) only streams past it.
SELECT b.*
FROM (SELECT DISTINCT tenant_id, run_id FROM newer_parts) t
RIGHT ANTI JOIN base_parts b
    ON b.tenant_id = t.tenant_id AND b.run_id = t.run_id
UNION ALL
SELECT * FROM merged_touched
