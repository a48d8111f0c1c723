-- name:  readiness_runs
-- grain: one row per finished run, with what SPEC section 8 checks of it
-- unit:  money in US dollars, DECIMAL(38,12); counts of tool_call events
--        (whatever their status); flags
-- definition (SPEC section 8), from run_policies.sql and tool_call_checks.sql:
--   over_tool_call_limit     more tool_calls than max_tool_calls_per_run
--   unlisted_tool_calls, forbidden_tool_calls, writes,
--   writes_with_idempotency_key, ungated_writes
--                            the run's tool calls so flagged
--   replayable               the run's earliest run_started (ties: smallest
--                            event_id) names agent_version and prompt_version
--                            (non-empty), and every model_call names provider
--   replay_gap               why a run is not replayable
--   cost_cap_breach          cost_usd > max_cost_usd_per_run (equal is not
--                            a breach)
--   breaks_writes_gated      forbidden_tool_calls > 0, ungated_writes > 0 or
--                            a write without an idempotency key
--   breaks_runs_replayable   not replayable
--   breaks_cost_bounded      no policy with max_cost_usd_per_run, or a
--                            cost_cap_breach
--   forbidden_tool, ungated_write_tool, unkeyed_write_tool, unlisted_tool
--                            the offending tool (the first by name when
--                            several), as evidence
WITH first_start AS (
    SELECT tenant_id, run_id, agent_version, prompt_version
    FROM (
        SELECT
            tenant_id, run_id, agent_version, prompt_version,
            ROW_NUMBER() OVER (PARTITION BY tenant_id, run_id ORDER BY ts ASC, event_id ASC) AS pick
        FROM events
        WHERE event_type = 'run_started'
    ) AS s
    WHERE pick = 1
),
providers AS (
    SELECT
        tenant_id,
        run_id,
        SUM(CASE WHEN provider IS NULL OR provider = '' THEN 1 ELSE 0 END) AS calls_without_provider
    FROM events
    WHERE event_type = 'model_call'
    GROUP BY tenant_id, run_id
),
tools AS (
    SELECT
        tenant_id,
        run_id,
        SUM(CASE WHEN unlisted THEN 1 ELSE 0 END) AS unlisted_tool_calls,
        SUM(CASE WHEN forbidden THEN 1 ELSE 0 END) AS forbidden_tool_calls,
        SUM(CASE WHEN is_write THEN 1 ELSE 0 END) AS writes,
        SUM(CASE WHEN write_with_idempotency_key THEN 1 ELSE 0 END) AS writes_with_idempotency_key,
        SUM(CASE WHEN ungated THEN 1 ELSE 0 END) AS ungated_writes,
        MIN(CASE WHEN forbidden THEN tool END) AS forbidden_tool,
        MIN(CASE WHEN ungated THEN tool END) AS ungated_write_tool,
        MIN(CASE WHEN is_write AND NOT write_with_idempotency_key THEN tool END) AS unkeyed_write_tool,
        MIN(CASE WHEN unlisted THEN tool END) AS unlisted_tool
    FROM tool_call_checks
    GROUP BY tenant_id, run_id
),
checked AS (
    SELECT
        r.tenant_id,
        r.run_id,
        r.workflow,
        r.agent_version,
        r.date,
        r.week,
        r.month,
        p.start_date,
        p.has_policy,
        p.policy_tenant_id,
        p.policy_effective_from,
        p.max_tool_calls_per_run,
        p.max_cost_usd_per_run,
        r.cost_usd,
        r.tool_calls,
        COALESCE(r.tool_calls > p.max_tool_calls_per_run, FALSE) AS over_tool_call_limit,
        CAST(COALESCE(t.unlisted_tool_calls, 0) AS BIGINT) AS unlisted_tool_calls,
        CAST(COALESCE(t.forbidden_tool_calls, 0) AS BIGINT) AS forbidden_tool_calls,
        CAST(COALESCE(t.writes, 0) AS BIGINT) AS writes,
        CAST(COALESCE(t.writes_with_idempotency_key, 0) AS BIGINT) AS writes_with_idempotency_key,
        CAST(COALESCE(t.ungated_writes, 0) AS BIGINT) AS ungated_writes,
        CASE
            WHEN s.run_id IS NULL THEN 'no run_started'
            WHEN COALESCE(s.agent_version, '') = '' THEN 'run_started names no agent_version'
            WHEN COALESCE(s.prompt_version, '') = '' THEN 'run_started names no prompt_version'
            WHEN COALESCE(m.calls_without_provider, 0) > 0 THEN 'a model_call names no provider'
        END AS replay_gap,
        COALESCE(r.cost_usd > p.max_cost_usd_per_run, FALSE) AS cost_cap_breach,
        t.forbidden_tool,
        t.ungated_write_tool,
        t.unkeyed_write_tool,
        t.unlisted_tool
    FROM runs r
    JOIN run_policies p ON p.tenant_id = r.tenant_id AND p.run_id = r.run_id
    LEFT JOIN first_start s ON s.tenant_id = r.tenant_id AND s.run_id = r.run_id
    LEFT JOIN providers m ON m.tenant_id = r.tenant_id AND m.run_id = r.run_id
    LEFT JOIN tools t ON t.tenant_id = r.tenant_id AND t.run_id = r.run_id
    WHERE r.finished
)
SELECT
    tenant_id,
    run_id,
    workflow,
    agent_version,
    date,
    week,
    month,
    start_date,
    has_policy,
    policy_tenant_id,
    policy_effective_from,
    max_tool_calls_per_run,
    max_cost_usd_per_run,
    cost_usd,
    tool_calls,
    over_tool_call_limit,
    unlisted_tool_calls,
    forbidden_tool_calls,
    writes,
    writes_with_idempotency_key,
    ungated_writes,
    replay_gap IS NULL AS replayable,
    replay_gap,
    cost_cap_breach,
    forbidden_tool_calls > 0 OR ungated_writes > 0
        OR writes_with_idempotency_key < writes AS breaks_writes_gated,
    replay_gap IS NOT NULL AS breaks_runs_replayable,
    max_cost_usd_per_run IS NULL OR cost_cap_breach AS breaks_cost_bounded,
    forbidden_tool,
    ungated_write_tool,
    unkeyed_write_tool,
    unlisted_tool
FROM checked
