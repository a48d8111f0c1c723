-- name:  run_parts
-- grain: one row per run (tenant_id, run_id) and per part of the lake: the
--        partial sums of the run's events in that part. `runs` merges the
--        parts of each run; see runs.sql.
-- unit:  money in US dollars, DECIMAL(38,12); counts of events; times UTC
-- definition: this query over a set of events (the events of one ingest, one
--   date partition, or the whole lake) gives, per run:
--   started_at, started_event_id, workflow, agent_version
--                            the earliest run_started in the set by ts (ties:
--                            the smallest event_id); NULL when none
--   finished_at, finished_event_id, outcome, cap_hit
--                            the latest run_finished in the set by ts (ties:
--                            the greatest event_id); NULL when none
--   model_cost_usd           sum of model_calls.cost_usd (priced per section 2
--                            with the prices in force when the part was made;
--                            a new price load makes every part stale)
--   every other column       a count or sum over the set, or the first/last ts
-- Parts are kept so that merging them gives exactly what this query gives
-- over all of a run's events at once: sums add, minima and maxima compare,
-- and the earliest start / latest finish compare by (ts, event_id).
-- Stored parts record a hash of this query (comment lines aside), of
-- merge_parts.sql and model_calls.sql: a change to any of them makes every
-- stored part stale, and it is rebuilt (docs/lake.md, Definition versions).
-- transforms/src/parts/ computes the same rows in Rust: change it with
-- this query and bump its PARTS_CODE_VERSION.
WITH started AS (
    SELECT tenant_id, run_id, ts AS started_at, event_id AS started_event_id, workflow, agent_version
    FROM (
        SELECT
            tenant_id, run_id, ts, event_id, workflow, agent_version,
            ROW_NUMBER() OVER (PARTITION BY tenant_id, run_id ORDER BY ts ASC, event_id ASC) AS pick
        FROM events
        WHERE event_type = 'run_started'
    ) AS s
    WHERE pick = 1
),
finishes AS (
    SELECT tenant_id, run_id, ts AS finished_at, event_id AS finished_event_id, outcome, cap_hit, run_finished_events
    FROM (
        SELECT
            tenant_id, run_id, ts, event_id, outcome, cap_hit,
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
    s.started_at,
    s.started_event_id,
    s.workflow,
    s.agent_version,
    f.finished_at,
    f.finished_event_id,
    f.outcome,
    f.cap_hit,
    CAST(COALESCE(f.run_finished_events, 0) AS BIGINT) AS run_finished_events,
    CAST(COALESCE(m.model_cost_usd, 0) AS DECIMAL(38, 12)) AS model_cost_usd,
    CAST(COALESCE(c.tool_cost_usd, 0) AS DECIMAL(38, 12)) AS tool_cost_usd,
    CAST(COALESCE(m.model_calls, 0) AS BIGINT) AS model_calls,
    CAST(COALESCE(m.input_tokens, 0) AS BIGINT) AS input_tokens,
    CAST(COALESCE(m.cached_input_tokens, 0) AS BIGINT) AS cached_input_tokens,
    CAST(COALESCE(m.output_tokens, 0) AS BIGINT) AS output_tokens,
    CAST(COALESCE(m.reasoning_tokens, 0) AS BIGINT) AS reasoning_tokens,
    CAST(COALESCE(m.cache_hits, 0) AS BIGINT) AS cache_hits,
    CAST(COALESCE(m.model_errors, 0) AS BIGINT) AS model_errors,
    CAST(COALESCE(m.unpriced_model_calls, 0) AS BIGINT) AS unpriced_model_calls,
    CAST(c.tool_calls AS BIGINT) AS tool_calls,
    CAST(c.tool_errors AS BIGINT) AS tool_errors,
    CAST(c.policy_blocks AS BIGINT) AS policy_blocks,
    CAST(c.approvals_requested AS BIGINT) AS approvals_requested,
    CAST(c.approvals_approved AS BIGINT) AS approvals_approved,
    CAST(c.approvals_rejected AS BIGINT) AS approvals_rejected,
    CAST(c.human_overrides AS BIGINT) AS human_overrides,
    CAST(c.bad_run_reports AS BIGINT) AS bad_run_reports,
    CAST(c.events AS BIGINT) AS events,
    c.first_event_at,
    c.last_event_at
FROM counts c
LEFT JOIN started s ON s.tenant_id = c.tenant_id AND s.run_id = c.run_id
LEFT JOIN finishes f ON f.tenant_id = c.tenant_id AND f.run_id = c.run_id
LEFT JOIN model m ON m.tenant_id = c.tenant_id AND m.run_id = c.run_id
