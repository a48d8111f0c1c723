-- name:  tool_calls
-- grain: one row per stored tool_call event
-- unit:  cost_usd in US dollars (Decimal(38,12), 0 when absent); latency in ms
-- definition: the tool_call events of `events` with the columns that type
--        defines (SPEC section 1); `is_error` is true for status error or
--        timeout, as the tool error rate counts them.
SELECT
    event_id,
    ts,
    tenant_id,
    run_id,
    tool,
    access,
    status,
    status IN ('error', 'timeout') AS is_error,
    latency_ms,
    cost_usd,
    idempotency_key,
    attributes,
    date
FROM events
WHERE event_type = 'tool_call'
