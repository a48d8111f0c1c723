-- name:  period_range
-- grain: one row per finished run
-- unit:  dates
-- definition: the whole [--from, --to) range as the one period of
--   revenue.sql, for `agentledger metrics --by tenant_id --from --to`. The
--   three lines marked `@period` take the place of those of revenue.sql: the
--   period's key (its first day), its first day and the first day after it.
--   As written the range is 2026-10-19 to 2026-10-26; the command puts its
--   --from for DATE '2026-10-19' and its --to for DATE '2026-10-26'.
SELECT
    tenant_id,
    date,
    succeeded,
    DATE '2026-10-19' AS period,                                            -- @period
    DATE '2026-10-19' AS period_start,                                      -- @period
    DATE '2026-10-26' AS period_end                                         -- @period
FROM runs
WHERE finished AND date >= DATE '2026-10-19' AND date < DATE '2026-10-26'
ORDER BY tenant_id, date
