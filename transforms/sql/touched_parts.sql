-- name:  touched_parts
-- grain: one row per part of a run that a part newer than the base touches
-- unit:  as run_parts
-- definition: the parts to merge when the stored parts have a *base* (the
--   parts of one rebuild or merge, at most one row per run; `base_parts`) and
--   parts written after it (`newer_parts`: ingests' own parts, refreshes,
--   parts computed on the fly from events no part covers yet): every newer
--   part, and the base row of each run a newer part touches. merge_parts.sql
--   merges them into one row per run; merge_on_read.sql adds the base rows
--   of the runs no newer part touches, which are final as they are.
-- The touched runs (few) come first: a hash join holds its first side in
-- memory, and the base (every run) only streams past it.
SELECT b.*
FROM (SELECT DISTINCT tenant_id, run_id FROM newer_parts) t
RIGHT SEMI JOIN base_parts b
    ON b.tenant_id = t.tenant_id AND b.run_id = t.run_id
UNION ALL
SELECT * FROM newer_parts
