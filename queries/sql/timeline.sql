-- name:  timeline
-- grain: one row per event of one run, in order (ts, then event_id byte-wise)
-- unit:  money in US dollars, DECIMAL(38,12)
-- definition: what the run did, from its logged events, with what each step
--   cost and the running total: model calls at their priced cost (see
--   model_calls.cost_source), tool calls at their own cost_usd, other events
--   at no cost. The run is chosen on the line marked `@run`.
WITH run_events AS (
    SELECT
        e.ts,
        e.event_id,
        e.event_type,
        CASE e.event_type
            WHEN 'run_started' THEN concat_ws(' ', e.workflow, e.agent_version)
            WHEN 'model_call' THEN concat_ws(' ', e.model, concat(e.input_tokens, ' in'), concat(e.output_tokens, ' out'), e.status)
            WHEN 'tool_call' THEN concat_ws(' ', e.tool, e.access, e.status)
            WHEN 'policy_block' THEN concat_ws(' ', e.tool, e.rule)
            WHEN 'approval' THEN concat_ws(' ', e.decision, e.tool, e.approver)
            WHEN 'human_override' THEN concat_ws(' ', e.kind, e.actor, e.reason)
            WHEN 'run_finished' THEN concat_ws(' ', e.outcome, e.cap_hit)
            WHEN 'feedback' THEN concat_ws(' ', e.kind, e.actor, e.note)
        END AS detail,
        CASE
            WHEN e.event_type = 'model_call' THEN m.cost_usd
            WHEN e.event_type = 'tool_call' THEN e.cost_usd
        END AS cost_usd,
        CASE
            WHEN e.event_type = 'model_call' THEN m.cost_source
            WHEN e.event_type = 'tool_call' THEN 'event'
        END AS cost_source
    FROM events e
    LEFT JOIN model_calls m ON m.event_id = e.event_id
    WHERE e.tenant_id = 'acme' AND e.run_id = 'run-0001'                    -- @run
)
SELECT
    ts,
    event_id,
    event_type,
    detail,
    cost_usd,
    cost_source,
    CAST(SUM(COALESCE(cost_usd, 0)) OVER (
        ORDER BY ts, event_id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    ) AS DECIMAL(38, 12)) AS running_cost_usd
FROM run_events
ORDER BY ts, event_id
