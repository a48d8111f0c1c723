-- name:  merge_parts
-- grain: one row per run (tenant_id, run_id), in the columns of run_parts
-- unit:  as run_parts
-- definition: merges the parts of each run in `run_parts` into one part, as
--   if run_parts.sql had read all of the run's events at once:
--   started_*, workflow, agent_version  of the part with the earliest start
--                            by (started_at, started_event_id)
--   finished_*, outcome, cap_hit        of the part with the latest finish
--                            by (finished_at, finished_event_id)
--   first_event_at / last_event_at      the minimum / maximum
--   every other column       the sum
-- `runs` reads the merged parts; agentledger also uses this query to rewrite
-- many parts files into one with a single row per run (then `runs` can read
-- that file without merging again). A change to this query makes every
-- stored part stale (docs/lake.md, Definition versions); the Rust merger in
-- transforms/src/parts/ must follow it, with its PARTS_CODE_VERSION bumped.
SELECT
    tenant_id,
    run_id,
    MIN(started_at) AS started_at,
    first_value(started_event_id ORDER BY started_at ASC NULLS LAST, started_event_id ASC) AS started_event_id,
    first_value(workflow ORDER BY started_at ASC NULLS LAST, started_event_id ASC) AS workflow,
    first_value(agent_version ORDER BY started_at ASC NULLS LAST, started_event_id ASC) AS agent_version,
    MAX(finished_at) AS finished_at,
    first_value(finished_event_id ORDER BY finished_at DESC NULLS LAST, finished_event_id DESC) AS finished_event_id,
    first_value(outcome ORDER BY finished_at DESC NULLS LAST, finished_event_id DESC) AS outcome,
    first_value(cap_hit ORDER BY finished_at DESC NULLS LAST, finished_event_id DESC) AS cap_hit,
    SUM(run_finished_events) AS run_finished_events,
    SUM(model_cost_usd) AS model_cost_usd,
    SUM(tool_cost_usd) AS tool_cost_usd,
    SUM(model_calls) AS model_calls,
    SUM(input_tokens) AS input_tokens,
    SUM(cached_input_tokens) AS cached_input_tokens,
    SUM(output_tokens) AS output_tokens,
    SUM(reasoning_tokens) AS reasoning_tokens,
    SUM(cache_hits) AS cache_hits,
    SUM(model_errors) AS model_errors,
    SUM(unpriced_model_calls) AS unpriced_model_calls,
    SUM(tool_calls) AS tool_calls,
    SUM(tool_errors) AS tool_errors,
    SUM(policy_blocks) AS policy_blocks,
    SUM(approvals_requested) AS approvals_requested,
    SUM(approvals_approved) AS approvals_approved,
    SUM(approvals_rejected) AS approvals_rejected,
    SUM(human_overrides) AS human_overrides,
    SUM(bad_run_reports) AS bad_run_reports,
    SUM(events) AS events,
    MIN(first_event_at) AS first_event_at,
    MAX(last_event_at) AS last_event_at
FROM run_parts
GROUP BY tenant_id, run_id
