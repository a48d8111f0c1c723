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
--
-- How: `run_parts` (run_parts.sql) holds per-run partial sums, one row per
-- run and part of the lake (an ingest's events, kept up to date by agentledger
-- as events arrive and prices change). `merged_parts` is merge_parts.sql over
-- them: one part per run, as if all of the run's events had come at once, so
-- a late event changes its run exactly as it should. (When the stored parts
-- already hold a single row per run, agentledger reads them as they are.)
SELECT
    tenant_id,
    run_id,
    COALESCE(workflow, 'unknown') AS workflow,
    COALESCE(agent_version, 'unknown') AS agent_version,
    finished_at IS NOT NULL AS finished,
    finished_at,
    outcome,
    cap_hit,
    human_overrides > 0 AS overridden,
    COALESCE(outcome = 'success', FALSE) AND human_overrides = 0 AS succeeded,
    CAST(finished_at AS DATE) AS date,
    CAST(date_trunc('week', finished_at) AS DATE) AS week,
    to_char(finished_at, '%Y-%m') AS month,
    CAST(model_cost_usd AS DECIMAL(38, 12)) AS model_cost_usd,
    CAST(tool_cost_usd AS DECIMAL(38, 12)) AS tool_cost_usd,
    CAST(model_cost_usd + tool_cost_usd AS DECIMAL(38, 12)) AS cost_usd,
    model_calls,
    input_tokens,
    cached_input_tokens,
    output_tokens,
    reasoning_tokens,
    cache_hits,
    model_errors,
    unpriced_model_calls,
    tool_calls,
    tool_errors,
    policy_blocks,
    approvals_requested,
    approvals_approved,
    approvals_rejected,
    human_overrides,
    bad_run_reports,
    run_finished_events,
    events,
    first_event_at,
    last_event_at
FROM merged_parts
