-- name:  readiness_offenders
-- grain: one row per finished run and readiness condition it breaks, the
--        worst first within each group and condition, at most 10 of each
--        (`agentledger readiness --limit N`); as written here groups are
--        tenant_id and week.
-- unit:  money in US dollars, DECIMAL(38,12); breaches are counts of
--        tool_call events
-- definition (SPEC section 8, "each failed condition is reported with the
--   runs that break it"), from readiness_runs.sql:
--   condition        writes_gated, runs_replayable or cost_bounded
--   reason           what the run did: the first that applies
--   tool             the offending tool (writes_gated)
--   cost_usd, max_cost_usd_per_run  the run's cost and its cap (cost_bounded)
--   breaches         offending tool calls (writes_gated); 1 otherwise
--   excess_usd       cost_usd - max_cost_usd_per_run (cost_bounded; NULL
--                    without a cap)
--   rank             1 for the worst run of the group and condition: most
--                    breaches, then largest excess, then largest cost,
--                    then tenant_id and run_id
--   failing_runs     every run of the group that breaks the condition
-- Lines marked `@partition` take the chosen keys, `@filter` the --from/--to
-- cut and `@limit` the number of runs listed.
WITH breaks AS (
    SELECT
        tenant_id, run_id, workflow, agent_version, date, week, month,
        'writes_gated' AS condition,
        CASE
            WHEN forbidden_tool_calls > 0 THEN 'forbidden tool executed'
            WHEN ungated_writes > 0 THEN 'write without an approval before it'
            ELSE 'write without an idempotency key'
        END AS reason,
        CASE
            WHEN forbidden_tool_calls > 0 THEN forbidden_tool
            WHEN ungated_writes > 0 THEN ungated_write_tool
            ELSE unkeyed_write_tool
        END AS tool,
        cost_usd,
        max_cost_usd_per_run,
        forbidden_tool_calls + ungated_writes + writes - writes_with_idempotency_key AS breaches,
        CAST(NULL AS DECIMAL(38, 12)) AS excess_usd
    FROM readiness_runs
    WHERE breaks_writes_gated
    UNION ALL
    SELECT
        tenant_id, run_id, workflow, agent_version, date, week, month,
        'runs_replayable' AS condition,
        replay_gap AS reason,
        CAST(NULL AS VARCHAR) AS tool,
        cost_usd,
        max_cost_usd_per_run,
        CAST(1 AS BIGINT) AS breaches,
        CAST(NULL AS DECIMAL(38, 12)) AS excess_usd
    FROM readiness_runs
    WHERE breaks_runs_replayable
    UNION ALL
    SELECT
        tenant_id, run_id, workflow, agent_version, date, week, month,
        'cost_bounded' AS condition,
        CASE
            WHEN cost_cap_breach THEN 'cost over max_cost_usd_per_run'
            WHEN has_policy THEN 'policy sets no max_cost_usd_per_run'
            ELSE 'no policy in force'
        END AS reason,
        CAST(NULL AS VARCHAR) AS tool,
        cost_usd,
        max_cost_usd_per_run,
        CAST(1 AS BIGINT) AS breaches,
        CAST(cost_usd - max_cost_usd_per_run AS DECIMAL(38, 12)) AS excess_usd
    FROM readiness_runs
    WHERE breaks_cost_bounded
),
ranked AS (
    SELECT
        b.*,
        CAST(ROW_NUMBER() OVER (
            PARTITION BY condition, tenant_id, week                         -- @partition
            ORDER BY breaches DESC, excess_usd DESC NULLS LAST, cost_usd DESC, tenant_id, run_id
        ) AS BIGINT) AS rank,
        COUNT(*) OVER (
            PARTITION BY condition, tenant_id, week                         -- @partition
        ) AS failing_runs
    FROM breaks b
    WHERE date IS NOT NULL                                                  -- @filter
)
SELECT
    condition,
    tenant_id,
    run_id,
    workflow,
    agent_version,
    date,
    week,
    month,
    reason,
    tool,
    cost_usd,
    max_cost_usd_per_run,
    breaches,
    excess_usd,
    rank,
    failing_runs
FROM ranked
WHERE rank <= 10                                                            -- @limit
ORDER BY condition, tenant_id, week, rank                                   -- @order
