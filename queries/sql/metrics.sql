-- name:  metrics
-- grain: one row per group of finished runs. `agentledger metrics --by KEYS`
--        picks the keys (any of tenant_id, workflow, agent_version, date,
--        week, month); as written here the file groups by tenant_id and week
--        and runs as is in `agentledger sql`.
-- unit:  money in US dollars, DECIMAL(38,12); rates are fractions (0.25, not 25%)
-- definition (SPEC section 3), over the finished runs of each group:
--   runs                   finished runs (a group exists only where it has one)
--   successes              succeeded runs (outcome success, not overridden)
--   success_rate           successes / runs
--   cost_usd               sum of run costs, failed runs included
--   cost_per_success_usd   cost_usd / successes, rounded half to even at 12
--                          digits; NULL when successes = 0
--   override_rate          overridden runs / runs
--   cap_hit_rate           runs whose final run_finished has a cap_hit / runs
--   model_calls, input_tokens, cached_input_tokens, output_tokens, cache_hits,
--   unpriced_model_calls   over the model_call events of those runs
--   tool_calls, tool_errors  tool_call events; errors are status error or timeout
--   tool_error_rate        tool_errors / tool_calls; NULL when no tool call
--   policy_blocks          policy_block events
--   policy_block_rate      policy_blocks / (tool_calls + policy_blocks); NULL when both 0
--   approvals_requested, approvals_rejected  approval events by decision
--   bad_run_reports        feedback events of kind bad_run_report
-- Lines marked `@keys` take the chosen keys; the line marked `@filter` takes
-- the --from/--to cut on the run's date ([from, to)).
WITH grouped AS (
    SELECT
        tenant_id, week,                                                    -- @keys
        COUNT(*) AS runs,
        SUM(CASE WHEN succeeded THEN 1 ELSE 0 END) AS successes,
        SUM(CASE WHEN overridden THEN 1 ELSE 0 END) AS overridden_runs,
        SUM(CASE WHEN cap_hit IS NOT NULL THEN 1 ELSE 0 END) AS cap_hit_runs,
        CAST(SUM(cost_usd) AS DECIMAL(38, 12)) AS cost_usd,
        SUM(model_calls) AS model_calls,
        SUM(input_tokens) AS input_tokens,
        SUM(cached_input_tokens) AS cached_input_tokens,
        SUM(output_tokens) AS output_tokens,
        SUM(cache_hits) AS cache_hits,
        SUM(unpriced_model_calls) AS unpriced_model_calls,
        SUM(tool_calls) AS tool_calls,
        SUM(tool_errors) AS tool_errors,
        SUM(policy_blocks) AS policy_blocks,
        SUM(approvals_requested) AS approvals_requested,
        SUM(approvals_rejected) AS approvals_rejected,
        SUM(bad_run_reports) AS bad_run_reports
    FROM runs
    WHERE finished                                                          -- @filter
    GROUP BY tenant_id, week                                                -- @keys
)
SELECT
    tenant_id, week,                                                        -- @keys
    runs,
    successes,
    CAST(successes AS DOUBLE) / runs AS success_rate,
    cost_usd,
    div_money(cost_usd, successes) AS cost_per_success_usd,
    CAST(overridden_runs AS DOUBLE) / runs AS override_rate,
    CAST(cap_hit_runs AS DOUBLE) / runs AS cap_hit_rate,
    model_calls,
    input_tokens,
    cached_input_tokens,
    output_tokens,
    cache_hits,
    unpriced_model_calls,
    tool_calls,
    tool_errors,
    CAST(tool_errors AS DOUBLE) / NULLIF(tool_calls, 0) AS tool_error_rate,
    policy_blocks,
    CAST(policy_blocks AS DOUBLE) / NULLIF(tool_calls + policy_blocks, 0) AS policy_block_rate,
    approvals_requested,
    approvals_rejected,
    bad_run_reports
FROM grouped
ORDER BY tenant_id, week                                                    -- @keys
