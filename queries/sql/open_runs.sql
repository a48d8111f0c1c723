-- name:  open_runs
-- grain: one row per group of open runs (runs without any run_finished, even
--        one known from a single stray event). `agentledger metrics --open
--        --by KEYS` groups by the keys that apply to a run that has not
--        finished (tenant_id, workflow, agent_version); as written, by tenant.
-- unit:  money in US dollars, DECIMAL(38,12)
-- definition (SPEC section 3): open runs are kept apart from every metric;
--   this lists how many there are and what they have cost so far.
--   --from/--to cut on the UTC date of the run's latest event.
SELECT
    tenant_id,                                                              -- @keys
    COUNT(*) AS open_runs,
    CAST(SUM(cost_usd) AS DECIMAL(38, 12)) AS cost_usd,
    SUM(model_calls) AS model_calls,
    SUM(tool_calls) AS tool_calls,
    SUM(unpriced_model_calls) AS unpriced_model_calls,
    MIN(first_event_at) AS first_event_at,
    MAX(last_event_at) AS last_event_at
FROM runs
WHERE NOT finished                                                          -- @filter
GROUP BY tenant_id                                                          -- @keys
ORDER BY tenant_id                                                          -- @keys
