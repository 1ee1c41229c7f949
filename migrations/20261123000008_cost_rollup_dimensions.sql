-- The resource group a charge is in, where the export names it (Azure); else it is read from
-- an Azure ResourceId.
ALTER TABLE cost_records ADD COLUMN resource_group text;

-- The daily rollup gains the dimensions the cost views group and filter by: the resource group
-- (from an Azure ResourceId), the charge category, and the Databricks dimensions of seed 000
-- with their DBUs. Imports, accrual and re-imports keep it; it is rebuilt here from the records.
ALTER TABLE cost_daily
    ADD COLUMN resource_group  text NOT NULL DEFAULT '',
    ADD COLUMN charge_category text NOT NULL DEFAULT '',
    ADD COLUMN workspace_id    text NOT NULL DEFAULT '',
    ADD COLUMN sku_name        text NOT NULL DEFAULT '',
    ADD COLUMN user_email      text NOT NULL DEFAULT '',
    ADD COLUMN job_id          text NOT NULL DEFAULT '',
    ADD COLUMN dbu_count       numeric NOT NULL DEFAULT 0;

-- A charge's resource group, lowercased as Azure treats names: as the export names it, else as
-- its Azure resource id (`/subscriptions/../resourceGroups/<rg>/..`) does; '' for none.
CREATE FUNCTION resource_group_of(resource_group text, resource_id text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN COALESCE(lower(NULLIF(resource_group, '')),
                    lower(substring(resource_id FROM '(?i)/resourcegroups/([^/]+)')), '');

TRUNCATE cost_daily;
INSERT INTO cost_daily (tenant_id, day, billing_currency, provider_name, service_name,
                        service_category, region_id, sub_account_id, resource_group,
                        charge_category, workspace_id, sku_name, user_email, job_id,
                        billed_cost, effective_cost, list_cost, dbu_count, records)
SELECT tenant_id, (charge_period_start AT TIME ZONE 'UTC')::date, billing_currency,
       COALESCE(provider_name, ''), COALESCE(service_name, ''), COALESCE(service_category, ''),
       COALESCE(region_id, ''), COALESCE(sub_account_id, ''), resource_group_of(resource_group, resource_id),
       COALESCE(charge_category, ''), COALESCE(workspace_id, ''), COALESCE(sku_name, ''),
       COALESCE(user_email, ''), COALESCE(job_id, ''),
       sum(billed_cost), COALESCE(sum(effective_cost), 0), COALESCE(sum(list_cost), 0),
       COALESCE(sum(dbu_count), 0), count(*)
FROM cost_records
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14;

-- Amounts in other currencies are converted with a tenant's own rate table, never silently:
-- `rate` is what one unit of `currency` is worth in the tenant's base currency.
CREATE TABLE currency_bases (
    tenant_id     uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    base_currency text NOT NULL CHECK (base_currency ~ '^[A-Z]{3}$'),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE currency_rates (
    tenant_id  uuid NOT NULL REFERENCES currency_bases (tenant_id) ON DELETE CASCADE,
    currency   text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    rate       numeric NOT NULL CHECK (rate > 0),
    PRIMARY KEY (tenant_id, currency)
);

-- The billing periods each import holds, by provider and billing account: a re-import of a
-- period finds the imports it replaces here instead of searching every record.
CREATE TABLE billing_import_periods (
    import_id            uuid NOT NULL REFERENCES billing_imports (id) ON DELETE CASCADE,
    tenant_id            uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider_name        text NOT NULL,
    billing_account_id   text NOT NULL,
    billing_period_start timestamptz
);
CREATE INDEX billing_import_periods_key_idx
    ON billing_import_periods (tenant_id, provider_name, billing_account_id, billing_period_start);
CREATE INDEX billing_import_periods_import_idx ON billing_import_periods (import_id);
INSERT INTO billing_import_periods (import_id, tenant_id, provider_name, billing_account_id,
                                    billing_period_start)
SELECT DISTINCT import_id, tenant_id, COALESCE(provider_name, ''), COALESCE(billing_account_id, ''),
       billing_period_start
FROM cost_records WHERE import_id IS NOT NULL;
