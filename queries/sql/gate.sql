-- name:  gate
-- grain: one row per agent_version with finished runs
-- unit:  counts of runs
-- definition (SPEC section 3, release gate): the finished runs and succeeded
--   runs of each version over the period; `agentledger gate` compares the
--   baseline's success rate with the candidate's:
--   the candidate fails when (baseline rate - candidate rate) x 100 > threshold
--   (percentage points, default 2). A version with no finished run is an error.
SELECT
    agent_version,
    COUNT(*) AS runs,
    SUM(CASE WHEN succeeded THEN 1 ELSE 0 END) AS successes
FROM runs
WHERE finished                                                              -- @filter
GROUP BY agent_version
ORDER BY agent_version
