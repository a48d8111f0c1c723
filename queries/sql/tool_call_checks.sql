-- name:  tool_call_checks
-- grain: one row per tool_call event (whatever its status), checked against
--        the policy of its run (run_policies.sql)
-- unit:  flags (booleans); times UTC
-- definition (SPEC section 8):
--   unlisted                 the tool is not in the run's allowed_tools, when
--                            that list is not empty
--   forbidden                the tool is in forbidden_tools (an executed call:
--                            a policy_block event is the control working and
--                            is not a tool_call)
--   is_write                 access = 'write'
--   write_with_idempotency_key  a write carrying a non-empty idempotency_key
--   needs_approval           a write to a tool in approval_required_tools
--   first_approved_at        the earliest approval of decision 'approved' for
--                            the same tool in the same run (any time)
--   ungated                  needs_approval, and no such approval at or before
--                            the write's ts (an approval after the write, or
--                            for another tool, does not gate it)
--   A run with no policy in force breaks nothing here.
WITH approved AS (
    SELECT tenant_id, run_id, tool, MIN(ts) AS first_approved_at
    FROM events
    WHERE event_type = 'approval' AND decision = 'approved' AND tool IS NOT NULL
    GROUP BY tenant_id, run_id, tool
),
checked AS (
    SELECT
        t.event_id,
        t.ts,
        t.tenant_id,
        t.run_id,
        t.tool,
        t.access,
        t.status,
        t.idempotency_key,
        p.has_policy,
        COALESCE(
            p.allowed_tools IS NOT NULL
            AND NOT array_has(string_to_array(p.allowed_tools, '|'), t.tool),
            FALSE
        ) AS unlisted,
        COALESCE(array_has(string_to_array(p.forbidden_tools, '|'), t.tool), FALSE) AS forbidden,
        COALESCE(t.access = 'write', FALSE) AS is_write,
        COALESCE(t.access = 'write' AND t.idempotency_key <> '', FALSE) AS write_with_idempotency_key,
        COALESCE(
            t.access = 'write'
            AND array_has(string_to_array(p.approval_required_tools, '|'), t.tool),
            FALSE
        ) AS needs_approval,
        a.first_approved_at
    FROM tool_calls t
    JOIN run_policies p ON p.tenant_id = t.tenant_id AND p.run_id = t.run_id
    LEFT JOIN approved a
        ON a.tenant_id = t.tenant_id AND a.run_id = t.run_id AND a.tool = t.tool
)
SELECT
    event_id,
    ts,
    tenant_id,
    run_id,
    tool,
    access,
    status,
    idempotency_key,
    has_policy,
    unlisted,
    forbidden,
    is_write,
    write_with_idempotency_key,
    needs_approval,
    first_approved_at,
    needs_approval AND NOT COALESCE(first_approved_at <= ts, FALSE) AS ungated
FROM checked
