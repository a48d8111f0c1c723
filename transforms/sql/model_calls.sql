-- name:  model_calls
-- grain: one row per stored model_call event
-- unit:  tokens as counts; cost_usd in US dollars (Decimal(38,12)), null when
--        the event did not carry its own cost
-- definition: the model_call events of `events` with the columns that type
--        defines (SPEC section 1), defaults already applied at ingest.
SELECT
    event_id,
    ts,
    tenant_id,
    run_id,
    model,
    provider,
    input_tokens,
    output_tokens,
    cached_input_tokens,
    reasoning_tokens,
    cost_usd,
    latency_ms,
    status,
    cache_hit,
    attributes,
    date
FROM events
WHERE event_type = 'model_call'
