-- name:  margin
-- grain: one row per tenant and period with finished runs: the `metrics`
--        row with the period's revenue and margin beside it. As written the
--        period is the ISO week (the `metrics` and `revenue` views as
--        registered in every session); `agentledger metrics --by
--        tenant_id,date|week|month` and `--by tenant_id --from --to` use the
--        same file with their period.
-- unit:  US dollars, DECIMAL(38,12); gross_margin a fraction
-- definition (SPEC section 3):
--   revenue_usd   from `revenue`
--   margin_usd    revenue_usd - cost_usd
--   gross_margin  margin_usd / revenue_usd; NULL when revenue is 0
--   A row with margin_usd < 0 is a negative account (a tenant with costs and
--   no plan in force is one).
SELECT
    m.*,
    r.revenue_usd,
    CAST(r.revenue_usd - m.cost_usd AS DECIMAL(38, 12)) AS margin_usd,
    CASE
        WHEN r.revenue_usd = 0 THEN NULL
        ELSE CAST(r.revenue_usd - m.cost_usd AS DOUBLE) / CAST(r.revenue_usd AS DOUBLE)
    END AS gross_margin
FROM metrics m
JOIN revenue r ON r.tenant_id = m.tenant_id AND r.period = m.week         -- @join
ORDER BY m.tenant_id, m.week                                               -- @order
