-- A record's cost of one type (the records' twin of `daily_cost`), for the views that read
-- records rather than the rollup: a filter by sub-account, which the rollup does not keep.
CREATE FUNCTION record_cost(cost_type text, billed numeric, effective numeric, list numeric,
                            contracted numeric) RETURNS numeric
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE cost_type
        WHEN 'effective' THEN COALESCE(effective, 0)
        WHEN 'list' THEN COALESCE(list, 0)
        WHEN 'contracted' THEN COALESCE(contracted, 0)
        ELSE billed
    END;
