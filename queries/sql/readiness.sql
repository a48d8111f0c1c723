-- name:  readiness
-- grain: one row per group of finished runs. `agentledger readiness --by
--        KEYS` picks the keys (any of tenant_id, workflow, agent_version,
--        date, week, month); as written here the file groups by tenant_id
--        and week and runs as is in `agentledger sql`.
-- unit:  counts of runs and of tool_call events (whatever their status);
--        money in US dollars, DECIMAL(38,12); rates are fractions
-- definition (SPEC section 8), over the readiness_runs of each group:
--   runs                         finished runs
--   tool_calls_over_limit_runs   runs with more tool_calls than max_tool_calls_per_run
--   unlisted_tool_calls          tool_calls whose tool is not in a non-empty allowed_tools
--   forbidden_tool_calls         tool_calls whose tool is in forbidden_tools
--                                (a policy_block is the control working, not a breach)
--   writes                       tool_calls with access = write
--   writes_with_idempotency_key  those carrying an idempotency_key
--   ungated_writes               writes to a tool in approval_required_tools with no
--                                approval 'approved' for that tool in the run at or
--                                before the write's ts
--   replayable_run_rate          replayable runs / runs (readiness_runs.sql)
--   cost_cap_breaches            runs whose cost exceeds max_cost_usd_per_run
--   runs_without_cost_cap        runs with no policy in force, or one with no
--                                max_cost_usd_per_run
--   cost_per_success_usd, success_rate, override_rate, tool_error_rate,
--   policy_block_rate, bad_run_reports
--                                as SPEC section 3: the `metrics` row of the group
--   writes_gated      forbidden_tool_calls = 0, ungated_writes = 0 and
--                     writes_with_idempotency_key = writes
--   runs_replayable   replayable_run_rate = 1
--   cost_bounded      every run has a policy with max_cost_usd_per_run, and
--                     cost_cap_breaches = 0 (cost equal to the cap is no breach)
--   ready             all three
--   writes_gated_failing_runs, runs_replayable_failing_runs,
--   cost_bounded_failing_runs    runs that break each condition
-- Lines marked `@keys` take the chosen keys, `@join` joins the `metrics` row
-- of the same keys and period, and the line marked `@filter` takes the
-- --from/--to cut on the run's date ([from, to)).
WITH grouped AS (
    SELECT
        tenant_id, week,                                                    -- @keys
        COUNT(*) AS runs,
        SUM(CASE WHEN over_tool_call_limit THEN 1 ELSE 0 END) AS tool_calls_over_limit_runs,
        SUM(unlisted_tool_calls) AS unlisted_tool_calls,
        SUM(forbidden_tool_calls) AS forbidden_tool_calls,
        SUM(writes) AS writes,
        SUM(writes_with_idempotency_key) AS writes_with_idempotency_key,
        SUM(ungated_writes) AS ungated_writes,
        SUM(CASE WHEN replayable THEN 1 ELSE 0 END) AS replayable_runs,
        SUM(CASE WHEN cost_cap_breach THEN 1 ELSE 0 END) AS cost_cap_breaches,
        SUM(CASE WHEN max_cost_usd_per_run IS NULL THEN 1 ELSE 0 END) AS runs_without_cost_cap,
        SUM(CASE WHEN breaks_writes_gated THEN 1 ELSE 0 END) AS writes_gated_failing_runs,
        SUM(CASE WHEN breaks_runs_replayable THEN 1 ELSE 0 END) AS runs_replayable_failing_runs,
        SUM(CASE WHEN breaks_cost_bounded THEN 1 ELSE 0 END) AS cost_bounded_failing_runs
    FROM readiness_runs
    WHERE date IS NOT NULL                                                  -- @filter
    GROUP BY tenant_id, week                                                -- @keys
),
judged AS (
    SELECT
        g.*,
        g.forbidden_tool_calls = 0 AND g.ungated_writes = 0
            AND g.writes_with_idempotency_key = g.writes AS writes_gated,
        g.replayable_runs = g.runs AS runs_replayable,
        g.runs_without_cost_cap = 0 AND g.cost_cap_breaches = 0 AS cost_bounded
    FROM grouped g
)
SELECT
    g.tenant_id, g.week,                                                    -- @gkeys
    g.runs,
    g.tool_calls_over_limit_runs,
    g.unlisted_tool_calls,
    g.forbidden_tool_calls,
    g.writes,
    g.writes_with_idempotency_key,
    g.ungated_writes,
    CAST(g.replayable_runs AS DOUBLE) / g.runs AS replayable_run_rate,
    g.cost_cap_breaches,
    g.runs_without_cost_cap,
    m.cost_per_success_usd,
    m.success_rate,
    m.override_rate,
    m.tool_error_rate,
    m.policy_block_rate,
    m.bad_run_reports,
    g.writes_gated,
    g.runs_replayable,
    g.cost_bounded,
    g.writes_gated AND g.runs_replayable AND g.cost_bounded AS ready,
    g.writes_gated_failing_runs,
    g.runs_replayable_failing_runs,
    g.cost_bounded_failing_runs
FROM judged g
JOIN metrics m ON m.tenant_id = g.tenant_id AND m.week = g.week            -- @join
WHERE g.runs > 0
ORDER BY g.tenant_id, g.week                                                -- @gkeys
