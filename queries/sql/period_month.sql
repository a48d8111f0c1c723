-- name:  period_month
-- grain: one row per finished run
-- unit:  dates; the key is the run's `month`
-- definition: the calendar month as the period of revenue.sql, for
--   `agentledger metrics --by tenant_id,month`. The three lines marked
--   `@period` take the place of those of revenue.sql: the period's key (the
--   run's `month`, as `metrics` groups by it), its first day and the first
--   day after it.
SELECT
    tenant_id,
    date,
    succeeded,
    month AS period,                                                        -- @period
    CAST(date_trunc('month', date) AS DATE) AS period_start,                -- @period
    CAST(date_trunc('month', date) + INTERVAL '1' MONTH AS DATE) AS period_end -- @period
FROM runs
WHERE finished
ORDER BY tenant_id, date
