-- name:  revenue
-- grain: one row per tenant and period where the tenant has a finished run
--        or, in a period with finished runs, a plan in force.
--        `agentledger metrics` picks the period (date, week, month, or the
--        whole [--from, --to) range); as written the period is the ISO week.
-- unit:  US dollars, DECIMAL(38,12)
-- definition (SPEC section 3):
--   success_revenue_usd  for each succeeded run of the period, the
--                        price_per_success_usd of the plan in force on the
--                        run's date
--   fee_revenue_usd      for each day d of the period, the monthly_fee_usd in
--                        force on d divided by the days of d's month; each
--                        stretch of days under one plan row within one month
--                        is one term, fee x days / days_in_month, rounded half
--                        to even at 12 digits
--   revenue_usd          the two added
-- The plan in force on a day is the tenant's row with the latest
-- effective_from on or before it; a tenant with no plan in force earns 0.
-- The period is defined once, on the three lines marked `@period`: the
-- period's key (as `metrics` groups by it), its first day and the first day
-- after it. `--by tenant_id,date`, `tenant_id,month` and `--from --to` take
-- those lines from period_date.sql, period_month.sql and period_range.sql.
-- The line marked `@filter` takes the --from/--to cut on the run's date, and
-- those marked `@from` and `@to` cut the period's days to [from, to).
WITH run_periods AS (
    -- Each finished run with its period.
    SELECT
        tenant_id,
        date,
        succeeded,
        period,
        period_start,                                                       -- @from
        period_end                                                          -- @to
    FROM (
        SELECT
            tenant_id,
            date,
            succeeded,
            week AS period,                                                 -- @period
            week AS period_start,                                           -- @period
            CAST(week + INTERVAL '7' DAY AS DATE) AS period_end             -- @period
        FROM runs
        WHERE finished                                                      -- @filter
    ) AS r
),
plans AS (
    SELECT
        tenant_id,
        effective_from,
        LEAD(effective_from) OVER (PARTITION BY tenant_id ORDER BY effective_from) AS effective_until,
        price_per_success_usd,
        monthly_fee_usd
    FROM customer_plans
),
periods AS (
    -- The tenant-periods with finished runs, and in every period that has
    -- finished runs at all, the tenants with a plan in force on one of its
    -- days (they earn their fee without a run; `margin` keeps only the
    -- first kind, the weekly report lists both).
    SELECT DISTINCT tenant_id, period, period_start, period_end
    FROM (
        SELECT tenant_id, period, period_start, period_end
        FROM run_periods
        UNION ALL
        SELECT p.tenant_id, r.period, r.period_start, r.period_end
        FROM (
            SELECT DISTINCT period, period_start, period_end
            FROM run_periods
        ) AS r
        JOIN plans p
            ON p.effective_from < r.period_end
            AND (p.effective_until IS NULL OR p.effective_until > r.period_start)
    ) AS candidates
),
days AS (
    SELECT tenant_id, period, CAST(day AS DATE) AS day
    FROM (
        SELECT tenant_id, period, unnest(range(period_start, period_end, INTERVAL '1' DAY)) AS day
        FROM periods
    ) AS d
),
fee_terms AS (
    SELECT
        d.tenant_id,
        d.period,
        p.effective_from,
        date_trunc('month', d.day) AS month_start,
        p.monthly_fee_usd,
        COUNT(*) AS days,
        MAX(CAST(date_part('day', date_trunc('month', d.day) + INTERVAL '1' MONTH - INTERVAL '1' DAY) AS BIGINT)) AS days_in_month
    FROM days d
    JOIN plans p
        ON p.tenant_id = d.tenant_id
        AND d.day >= p.effective_from
        AND (p.effective_until IS NULL OR d.day < p.effective_until)
    GROUP BY d.tenant_id, d.period, p.effective_from, date_trunc('month', d.day), p.monthly_fee_usd
),
fees AS (
    SELECT
        tenant_id,
        period,
        CAST(SUM(div_money(monthly_fee_usd * days, days_in_month)) AS DECIMAL(38, 12)) AS fee_revenue_usd
    FROM fee_terms
    GROUP BY tenant_id, period
),
successes AS (
    SELECT
        r.tenant_id,
        r.period,
        CAST(SUM(p.price_per_success_usd) AS DECIMAL(38, 12)) AS success_revenue_usd
    FROM run_periods r
    JOIN plans p
        ON p.tenant_id = r.tenant_id
        AND r.date >= p.effective_from
        AND (p.effective_until IS NULL OR r.date < p.effective_until)
    WHERE r.succeeded
    GROUP BY r.tenant_id, r.period
)
SELECT
    g.tenant_id,
    g.period,
    CAST(COALESCE(s.success_revenue_usd, 0) + COALESCE(f.fee_revenue_usd, 0) AS DECIMAL(38, 12)) AS revenue_usd,
    CAST(COALESCE(s.success_revenue_usd, 0) AS DECIMAL(38, 12)) AS success_revenue_usd,
    CAST(COALESCE(f.fee_revenue_usd, 0) AS DECIMAL(38, 12)) AS fee_revenue_usd
FROM periods g
LEFT JOIN successes s ON s.tenant_id = g.tenant_id AND s.period = g.period
LEFT JOIN fees f ON f.tenant_id = g.tenant_id AND f.period = g.period
ORDER BY g.tenant_id, g.period
