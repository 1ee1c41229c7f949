-- Views sum any of FOCUS's four costs (`cost_type=billed|effective|list|contracted`), so the
-- daily rollup keeps ContractedCost too, recomputed here from the records.
ALTER TABLE cost_daily ADD COLUMN contracted_cost numeric NOT NULL DEFAULT 0;

-- A rollup row's cost of one type.
CREATE FUNCTION daily_cost(d cost_daily, cost_type text) RETURNS numeric
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE cost_type
        WHEN 'effective' THEN d.effective_cost
        WHEN 'list' THEN d.list_cost
        WHEN 'contracted' THEN d.contracted_cost
        ELSE d.billed_cost
    END;

DELETE FROM cost_daily;
INSERT INTO cost_daily (tenant_id, day, billing_currency, provider_name, service_name,
                        service_category, region_id, resource_group, workspace_id, sku_name,
                        user_email, job_id, billed_cost, effective_cost, list_cost,
                        contracted_cost, dbu_count, records)
SELECT tenant_id, (charge_period_start AT TIME ZONE 'UTC')::date, billing_currency,
       COALESCE(provider_name, ''), COALESCE(service_name, ''), COALESCE(service_category, ''),
       COALESCE(region_id, ''), resource_group_of(resource_group, resource_id),
       COALESCE(workspace_id, ''), COALESCE(sku_name, ''), COALESCE(user_email, ''),
       COALESCE(job_id, ''), sum(billed_cost), COALESCE(sum(effective_cost), 0),
       COALESCE(sum(list_cost), 0), COALESCE(sum(contracted_cost), 0),
       COALESCE(sum(dbu_count), 0), count(*)
FROM cost_records
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12;
