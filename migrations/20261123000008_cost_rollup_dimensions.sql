-- The resource group a charge is in, where the export names it (Azure); else it is read from
-- an Azure ResourceId.
ALTER TABLE cost_records ADD COLUMN resource_group text;

-- The daily rollup holds the dimensions the cost views group and filter by, and no others (each
-- multiplies its rows): it gains the resource group and the Databricks dimensions of seed 000
-- with their DBUs, and loses the sub-account, which no view reads. Imports, accrual and
-- re-imports keep it; it is rebuilt here from the records.
ALTER TABLE cost_daily
    DROP COLUMN sub_account_id,
    ADD COLUMN resource_group  text NOT NULL DEFAULT '',
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
                        service_category, region_id, resource_group, workspace_id,
                        sku_name, user_email, job_id,
                        billed_cost, effective_cost, list_cost, dbu_count, records)
SELECT tenant_id, (charge_period_start AT TIME ZONE 'UTC')::date, billing_currency,
       COALESCE(provider_name, ''), COALESCE(service_name, ''), COALESCE(service_category, ''),
       COALESCE(region_id, ''), resource_group_of(resource_group, resource_id),
       COALESCE(workspace_id, ''), COALESCE(sku_name, ''),
       COALESCE(user_email, ''), COALESCE(job_id, ''),
       sum(billed_cost), COALESCE(sum(effective_cost), 0), COALESCE(sum(list_cost), 0),
       COALESCE(sum(dbu_count), 0), count(*)
FROM cost_records
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12;

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

-- Record lists read newest first (time, then id): an index in exactly that order lets a page
-- stop after its rows whatever plan a prepared statement gets.
DROP INDEX cost_records_tenant_period_idx;
CREATE INDEX cost_records_tenant_period_idx ON cost_records (tenant_id, charge_period_start, id);

-- A bulk load checks no foreign key row by row: the tenant and import checks took half of an
-- import's time, for values the import itself supplies (its own tenant and id, in the
-- transaction that holds its row). What the keys did on delete, these triggers do.
ALTER TABLE cost_records
    DROP CONSTRAINT cost_records_tenant_id_fkey,
    DROP CONSTRAINT cost_records_import_id_fkey;
CREATE FUNCTION delete_cost_records_of_tenant() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM cost_records WHERE tenant_id = OLD.id;
    RETURN NULL;
END $$;
CREATE TRIGGER tenants_delete_cost_records AFTER DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION delete_cost_records_of_tenant();
CREATE FUNCTION delete_cost_records_of_import() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM cost_records WHERE import_id = OLD.id;
    RETURN NULL;
END $$;
CREATE TRIGGER billing_imports_delete_cost_records AFTER DELETE ON billing_imports
    FOR EACH ROW EXECUTE FUNCTION delete_cost_records_of_import();
