-- name:  weekly_totals
-- grain: one row per ISO week with at least one row in `weekly_accounts`;
--        a week without one has no row here (the weekly report shows it as
--        zeros, with no cost per success)
-- unit:  US dollars, DECIMAL(38,12); counts of tenants, runs and calls
-- definition: the totals of the weekly report, summed over the week's rows
--   of `weekly_accounts`:
--   tenants               tenants listed that week
--   runs, successes       finished and succeeded runs
--   cost_usd              sum of run costs
--   revenue_usd           sum of revenue (success prices and prorated fees)
--   margin_usd            revenue_usd - cost_usd
--   cost_per_success_usd  cost_usd / successes, rounded half to even at 12
--                         digits; NULL when successes = 0
--   unpriced_model_calls  unpriced model calls of the week's runs
--   negative_accounts     tenants with margin_usd < 0 (SPEC section 3)
WITH summed AS (
    SELECT
        week,
        COUNT(*) AS tenants,
        SUM(runs) AS runs,
        SUM(successes) AS successes,
        CAST(SUM(cost_usd) AS DECIMAL(38, 12)) AS cost_usd,
        CAST(SUM(revenue_usd) AS DECIMAL(38, 12)) AS revenue_usd,
        SUM(unpriced_model_calls) AS unpriced_model_calls,
        SUM(CASE WHEN margin_usd < 0 THEN 1 ELSE 0 END) AS negative_accounts
    FROM weekly_accounts
    GROUP BY week
)
SELECT
    week,
    tenants,
    runs,
    successes,
    cost_usd,
    revenue_usd,
    CAST(revenue_usd - cost_usd AS DECIMAL(38, 12)) AS margin_usd,
    div_money(cost_usd, successes) AS cost_per_success_usd,
    unpriced_model_calls,
    negative_accounts
FROM summed
ORDER BY week
