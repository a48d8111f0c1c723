-- name:  cost_by_model
-- grain: one row per tenant, week and model, over the model calls of the
--        tenant's runs that finished in that week
-- unit:  US dollars, DECIMAL(38,12); counts of calls
-- definition: the cost drivers of the weekly report. A run's model calls
--   count in the week its run finished (SPEC section 3: every call of the
--   run, whatever its ts), priced as in `model_calls`; `top_cost_model` of an
--   alert is the model with the largest cost here (ties: the smallest name).
SELECT
    r.tenant_id,
    r.week,
    m.model,
    COUNT(*) AS model_calls,
    SUM(CASE WHEN m.cost_source = 'unpriced' THEN 1 ELSE 0 END) AS unpriced_model_calls,
    CAST(SUM(m.cost_usd) AS DECIMAL(38, 12)) AS cost_usd
FROM model_calls m
JOIN runs r ON r.tenant_id = m.tenant_id AND r.run_id = m.run_id
WHERE r.finished
GROUP BY r.tenant_id, r.week, m.model
ORDER BY r.tenant_id, r.week, m.model
