-- name:  run_policies
-- grain: one row per run (tenant_id, run_id), finished or open, with the
--        workflow_policies row in force for it; the policy columns are NULL
--        (and has_policy false) where no row is in force.
-- unit:  max_cost_usd_per_run in US dollars, DECIMAL(38,12); dates UTC
-- definition (SPEC section 8):
--   start_date             the UTC date of the run's earliest run_started, or
--                          of its earliest event when it has none
--   the policy of a run    the workflow_policies row of the run's workflow
--                          in force on start_date (the latest effective_from
--                          on or before it), taken from the rows for the
--                          run's own tenant when one of them is in force,
--                          else from the rows for every tenant ('*')
--   policy_tenant_id       which row applied: the tenant's own or '*'
--   allowed_tools, forbidden_tools, approval_required_tools
--                          '|'-separated lists as loaded; NULL: no list
--   max_tool_calls_per_run, max_cost_usd_per_run
--                          NULL: no maximum
WITH starts AS (
    SELECT tenant_id, run_id, MIN(ts) AS started_at
    FROM events
    WHERE event_type = 'run_started'
    GROUP BY tenant_id, run_id
),
run_dates AS (
    SELECT
        r.tenant_id,
        r.run_id,
        r.workflow,
        CAST(COALESCE(s.started_at, r.first_event_at) AS DATE) AS start_date
    FROM runs r
    LEFT JOIN starts s ON s.tenant_id = r.tenant_id AND s.run_id = r.run_id
),
candidates AS (
    SELECT
        d.tenant_id,
        d.run_id,
        p.tenant_id AS policy_tenant_id,
        p.effective_from AS policy_effective_from,
        p.allowed_tools,
        p.forbidden_tools,
        p.approval_required_tools,
        p.max_tool_calls_per_run,
        p.max_cost_usd_per_run,
        ROW_NUMBER() OVER (
            PARTITION BY d.tenant_id, d.run_id
            ORDER BY CASE WHEN p.tenant_id = '*' THEN 1 ELSE 0 END, p.effective_from DESC
        ) AS pick
    FROM run_dates d
    JOIN workflow_policies p
        ON p.workflow = d.workflow
        AND (p.tenant_id = d.tenant_id OR p.tenant_id = '*')
        AND p.effective_from <= d.start_date
)
SELECT
    d.tenant_id,
    d.run_id,
    d.workflow,
    d.start_date,
    c.policy_tenant_id IS NOT NULL AS has_policy,
    c.policy_tenant_id,
    c.policy_effective_from,
    c.allowed_tools,
    c.forbidden_tools,
    c.approval_required_tools,
    c.max_tool_calls_per_run,
    c.max_cost_usd_per_run
FROM run_dates d
LEFT JOIN candidates c
    ON c.tenant_id = d.tenant_id AND c.run_id = d.run_id AND c.pick = 1
