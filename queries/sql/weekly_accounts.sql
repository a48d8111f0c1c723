-- name:  weekly_accounts
-- grain: one row per tenant and ISO week in which the tenant had a finished
--        run or, in a week with finished runs, a plan in force
-- unit:  US dollars, DECIMAL(38,12); gross_margin a fraction
-- definition: the rows of the weekly report's margin table and margin.csv:
--   the tenant's metrics for the week (zero runs and zero cost when it had
--   no finished run) beside its revenue, margin_usd = revenue_usd - cost_usd
--   and gross_margin = margin_usd / revenue_usd (NULL when revenue is 0).
--   A row with margin_usd < 0 is a negative account.
SELECT
    r.tenant_id,
    r.period AS week,
    COALESCE(m.runs, 0) AS runs,
    COALESCE(m.successes, 0) AS successes,
    CAST(COALESCE(m.cost_usd, 0) AS DECIMAL(38, 12)) AS cost_usd,
    m.cost_per_success_usd,
    r.revenue_usd,
    CAST(r.revenue_usd - COALESCE(m.cost_usd, 0) AS DECIMAL(38, 12)) AS margin_usd,
    CASE
        WHEN r.revenue_usd = 0 THEN NULL
        ELSE CAST(r.revenue_usd - COALESCE(m.cost_usd, 0) AS DOUBLE) / CAST(r.revenue_usd AS DOUBLE)
    END AS gross_margin,
    COALESCE(m.unpriced_model_calls, 0) AS unpriced_model_calls
FROM revenue r
LEFT JOIN metrics m ON m.tenant_id = r.tenant_id AND m.week = r.period
ORDER BY r.tenant_id, r.period
