-- name:  model_calls
-- grain: one row per stored model_call event
-- unit:  tokens as counts; cost_usd in US dollars, DECIMAL(38,12), exact
-- definition: the model_call events of `events`, priced as SPEC section 2 says.
--   cost_source = 'event'    the event carried its own cost_usd: that is the cost.
--   cost_source = 'catalog'  the model_prices row of the same model whose
--                            effective_from is the latest on or before the
--                            call's UTC date prices it:
--                            ((input - cached) x input price
--                             + cached x cached-input price (the input price when empty)
--                             + output x output price) / 1,000,000
--   cost_source = 'unpriced' neither: cost_usd is 0 and the call counts in
--                            runs.unpriced_model_calls.
--   event_cost_usd is the cost the event carried (NULL when none);
--   price_effective_from names the price row used.
-- Prices have at most 6 fractional digits, so the arithmetic below is done
-- at scale 6 and the division by a million lands exactly on scale 12.
-- Stored run parts hold these costs: a change to this query makes them
-- stale and they are rebuilt (docs/lake.md, Definition versions).
WITH prices AS (
    SELECT
        model,
        effective_from,
        LEAD(effective_from) OVER (PARTITION BY model ORDER BY effective_from) AS effective_until,
        CAST(input_usd_per_mtok AS DECIMAL(38, 6)) AS input_price,
        CAST(COALESCE(cached_input_usd_per_mtok, input_usd_per_mtok) AS DECIMAL(38, 6)) AS cached_input_price,
        CAST(output_usd_per_mtok AS DECIMAL(38, 6)) AS output_price
    FROM model_prices
),
calls AS (
    SELECT
        event_id, ts, tenant_id, run_id, model, provider,
        input_tokens, output_tokens, cached_input_tokens, reasoning_tokens,
        cost_usd, latency_ms, status, cache_hit, attributes, date
    FROM events
    WHERE event_type = 'model_call'
)
SELECT
    c.event_id,
    c.ts,
    c.tenant_id,
    c.run_id,
    c.model,
    c.provider,
    c.input_tokens,
    c.output_tokens,
    c.cached_input_tokens,
    c.reasoning_tokens,
    CASE
        WHEN c.cost_usd IS NOT NULL THEN c.cost_usd
        WHEN p.model IS NOT NULL THEN CAST(
            (
                CAST(c.input_tokens - c.cached_input_tokens AS DECIMAL(20, 0)) * p.input_price
                + CAST(c.cached_input_tokens AS DECIMAL(20, 0)) * p.cached_input_price
                + CAST(c.output_tokens AS DECIMAL(20, 0)) * p.output_price
            ) * CAST('0.000001' AS DECIMAL(7, 6))
            AS DECIMAL(38, 12))
        ELSE CAST(0 AS DECIMAL(38, 12))
    END AS cost_usd,
    CASE
        WHEN c.cost_usd IS NOT NULL THEN 'event'
        WHEN p.model IS NOT NULL THEN 'catalog'
        ELSE 'unpriced'
    END AS cost_source,
    c.cost_usd AS event_cost_usd,
    CASE WHEN c.cost_usd IS NULL THEN p.effective_from END AS price_effective_from,
    c.latency_ms,
    c.status,
    c.cache_hit,
    c.attributes,
    c.date
FROM calls c
LEFT JOIN prices p
    ON p.model = c.model
    AND c.date >= p.effective_from
    AND (p.effective_until IS NULL OR c.date < p.effective_until)
