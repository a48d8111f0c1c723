-- name:  period_date
-- grain: one row per finished run
-- unit:  dates
-- definition: the UTC date as the period of revenue.sql, for `agentledger
--   metrics --by tenant_id,date`. The three lines marked `@period` take the
--   place of those of revenue.sql: the period's key (the run's `date`, as
--   `metrics` groups by it), its first day and the first day after it.
SELECT
    tenant_id,
    date,
    succeeded,
    date AS period,                                                         -- @period
    date AS period_start,                                                   -- @period
    CAST(date + INTERVAL '1' DAY AS DATE) AS period_end                     -- @period
FROM runs
WHERE finished
ORDER BY tenant_id, date
