-- name:  runs
-- grain: one row per run, the pair (tenant_id, run_id), finished or open
-- unit:  money in US dollars, DECIMAL(38,12); counts of events; times UTC
-- definition (SPEC section 3):
--   workflow, agent_version  from the run's earliest run_started (ties: the
--                            smallest event_id); 'unknown' where missing
--   finished                 the run has at least one run_finished
--   finished_at, outcome, cap_hit
--                            from its latest run_finished by ts (ties: the
--                            greatest event_id); NULL while open
--   overridden               at least one human_override, whenever it arrived
--   succeeded                finished, outcome = 'success' and not overridden
--   date, week, month        the UTC date of finished_at, the Monday of its ISO
--                            week, and 'YYYY-MM'; NULL while open
--   model_cost_usd           sum of model_calls.cost_usd (priced per section 2)
--   tool_cost_usd            sum of the tool_call cost_usd
--   cost_usd                 model_cost_usd + tool_cost_usd
--   every count covers all of the run's events, whatever their ts.
-- Event ids compare byte-wise and timestamps at microseconds, so ties are
-- broken the same way on every run of the query.
WITH started AS (
    SELECT tenant_id, run_id, workflow, agent_version
    FROM (
        SELECT
            tenant_id, run_id, workflow, agent_version,
            ROW_NUMBER() OVER (PARTITION BY tenant_id, run_id ORDER BY ts ASC, event_id ASC) AS pick
        FROM events
        WHERE event_type = 'run_started'
    ) AS s
    WHERE pick = 1
),
finishes AS (
    SELECT tenant_id, run_id, ts AS finished_at, outcome, cap_hit, run_finished_events
    FROM (
        SELECT
            tenant_id, run_id, ts, outcome, cap_hit,
            ROW_NUMBER() OVER (PARTITION BY tenant_id, run_id ORDER BY ts DESC, event_id DESC) AS pick,
            COUNT(*) OVER (PARTITION BY tenant_id, run_id) AS run_finished_events
        FROM events
        WHERE event_type = 'run_finished'
    ) AS f
    WHERE pick = 1
),
model AS (
    SELECT
        tenant_id,
        run_id,
        COUNT(*) AS model_calls,
        SUM(input_tokens) AS input_tokens,
        SUM(cached_input_tokens) AS cached_input_tokens,
        SUM(output_tokens) AS output_tokens,
        SUM(reasoning_tokens) AS reasoning_tokens,
        SUM(CASE WHEN cache_hit THEN 1 ELSE 0 END) AS cache_hits,
        SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END) AS model_errors,
        SUM(CASE WHEN cost_source = 'unpriced' THEN 1 ELSE 0 END) AS unpriced_model_calls,
        SUM(cost_usd) AS model_cost_usd
    FROM model_calls
    GROUP BY tenant_id, run_id
),
counts AS (
    SELECT
        tenant_id,
        run_id,
        COUNT(*) AS events,
        MIN(ts) AS first_event_at,
        MAX(ts) AS last_event_at,
        SUM(CASE WHEN event_type = 'tool_call' THEN 1 ELSE 0 END) AS tool_calls,
        SUM(CASE WHEN event_type = 'tool_call' AND status IN ('error', 'timeout') THEN 1 ELSE 0 END) AS tool_errors,
        SUM(CASE WHEN event_type = 'tool_call' THEN cost_usd END) AS tool_cost_usd,
        SUM(CASE WHEN event_type = 'policy_block' THEN 1 ELSE 0 END) AS policy_blocks,
        SUM(CASE WHEN event_type = 'approval' AND decision = 'requested' THEN 1 ELSE 0 END) AS approvals_requested,
        SUM(CASE WHEN event_type = 'approval' AND decision = 'approved' THEN 1 ELSE 0 END) AS approvals_approved,
        SUM(CASE WHEN event_type = 'approval' AND decision = 'rejected' THEN 1 ELSE 0 END) AS approvals_rejected,
        SUM(CASE WHEN event_type = 'human_override' THEN 1 ELSE 0 END) AS human_overrides,
        SUM(CASE WHEN event_type = 'feedback' AND kind = 'bad_run_report' THEN 1 ELSE 0 END) AS bad_run_reports
    FROM events
    GROUP BY tenant_id, run_id
)
SELECT
    c.tenant_id,
    c.run_id,
    COALESCE(s.workflow, 'unknown') AS workflow,
    COALESCE(s.agent_version, 'unknown') AS agent_version,
    f.finished_at IS NOT NULL AS finished,
    f.finished_at,
    f.outcome,
    f.cap_hit,
    c.human_overrides > 0 AS overridden,
    COALESCE(f.outcome = 'success', FALSE) AND c.human_overrides = 0 AS succeeded,
    CAST(f.finished_at AS DATE) AS date,
    CAST(date_trunc('week', f.finished_at) AS DATE) AS week,
    to_char(f.finished_at, '%Y-%m') AS month,
    CAST(COALESCE(m.model_cost_usd, 0) AS DECIMAL(38, 12)) AS model_cost_usd,
    CAST(COALESCE(c.tool_cost_usd, 0) AS DECIMAL(38, 12)) AS tool_cost_usd,
    CAST(COALESCE(m.model_cost_usd, 0) + COALESCE(c.tool_cost_usd, 0) AS DECIMAL(38, 12)) AS cost_usd,
    COALESCE(m.model_calls, 0) AS model_calls,
    COALESCE(m.input_tokens, 0) AS input_tokens,
    COALESCE(m.cached_input_tokens, 0) AS cached_input_tokens,
    COALESCE(m.output_tokens, 0) AS output_tokens,
    COALESCE(m.reasoning_tokens, 0) AS reasoning_tokens,
    COALESCE(m.cache_hits, 0) AS cache_hits,
    COALESCE(m.model_errors, 0) AS model_errors,
    COALESCE(m.unpriced_model_calls, 0) AS unpriced_model_calls,
    c.tool_calls,
    c.tool_errors,
    c.policy_blocks,
    c.approvals_requested,
    c.approvals_approved,
    c.approvals_rejected,
    c.human_overrides,
    c.bad_run_reports,
    COALESCE(f.run_finished_events, 0) AS run_finished_events,
    c.events,
    c.first_event_at,
    c.last_event_at
FROM counts c
LEFT JOIN started s ON s.tenant_id = c.tenant_id AND s.run_id = c.run_id
LEFT JOIN finishes f ON f.tenant_id = c.tenant_id AND f.run_id = c.run_id
LEFT JOIN model m ON m.tenant_id = c.tenant_id AND m.run_id = c.run_id
