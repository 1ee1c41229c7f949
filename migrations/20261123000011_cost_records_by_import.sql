-- Cost records are partitioned by tenant, and each tenant's by import: an import loads into a
-- table of its own, created in its transaction, and attaches it when the rows are in. Indexes
-- are then built once from the loaded rows instead of taking every row one at a time (which
-- was most of the server's time for an import), a failed import's table is gone with its
-- transaction, and replaced imports and deleted tenants drop tables instead of deleting rows.
-- The records Strata accrues itself (no import) are in one more table per tenant.
--
-- Tables: cost_records_tenant_<tenant> (by import) holds cost_records_import_<import> and
-- cost_records_accrued_<tenant>; ids are uuids without their dashes.

ALTER TABLE cost_records RENAME TO cost_records_unpartitioned;
DROP TRIGGER tenants_delete_cost_records ON tenants;
DROP TRIGGER billing_imports_delete_cost_records ON billing_imports;
DROP FUNCTION delete_cost_records_of_tenant();
DROP FUNCTION delete_cost_records_of_import();

-- A partitioned table has no identity column (before Postgres 17): ids come from a sequence.
CREATE SEQUENCE cost_record_ids;
SELECT setval('cost_record_ids', (SELECT COALESCE(max(id), 0) + 1 FROM cost_records_unpartitioned), false);

CREATE TABLE cost_records (
    id                   bigint NOT NULL DEFAULT nextval('cost_record_ids'),
    tenant_id            uuid NOT NULL,
    import_id            uuid,
    provider_id          uuid,
    -- The Strata resource the charge belongs to (its cloud id is the ResourceId). Not a
    -- foreign key: checking one costs an import a tenth of its time (a trigger call per row),
    -- for ids the import and accrual take from `resources` in their own transaction; and
    -- resources are deleted only with their tenant, whose records go with it.
    resource_ref         uuid,
    billed_cost          numeric NOT NULL,
    effective_cost       numeric,
    list_cost            numeric,
    contracted_cost      numeric,
    billing_currency     text NOT NULL,
    charge_period_start  timestamptz NOT NULL,
    charge_period_end    timestamptz,
    billing_period_start timestamptz,
    billing_period_end   timestamptz,
    charge_category      text,
    charge_class         text,
    charge_description   text,
    billing_account_id   text,
    billing_account_name text,
    sub_account_id       text,
    sub_account_name     text,
    provider_name        text,
    publisher_name       text,
    invoice_issuer_name  text,
    service_name         text,
    service_category     text,
    region_id            text,
    region_name          text,
    resource_id          text,
    resource_name        text,
    resource_type        text,
    sku_id               text,
    pricing_quantity     numeric,
    pricing_unit         text,
    consumed_quantity    numeric,
    consumed_unit        text,
    tags                 jsonb,
    workspace_id         text,
    cluster_id           text,
    job_id               text,
    user_email           text,
    sku_name             text,
    dbu_count            numeric,
    dbu_rate             numeric,
    resource_group       text
) PARTITION BY LIST (tenant_id);
ALTER SEQUENCE cost_record_ids OWNED BY cost_records.id;
-- Record lists read a tenant's newest first (time, then id); one record is found by its id,
-- which rises through each import's table (a block range index is all that needs).
CREATE INDEX cost_records_time_idx ON cost_records (charge_period_start, id);
CREATE INDEX cost_records_id_idx ON cost_records USING brin (id);

CREATE FUNCTION cost_records_table(kind text, id uuid) RETURNS text
    LANGUAGE sql IMMUTABLE
    RETURN 'cost_records_' || kind || '_' || replace(id::text, '-', '');

-- A tenant's tables, when the tenant is made. Attaching (rather than CREATE ... PARTITION OF)
-- takes a lock that does not wait for queries and writes on the other tenants' records.
CREATE FUNCTION cost_records_add_tenant(tenant uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    by_import text := cost_records_table('tenant', tenant);
    accrued   text := cost_records_table('accrued', tenant);
BEGIN
    EXECUTE format('CREATE TABLE %I (LIKE cost_records INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
                    PARTITION BY LIST (import_id)', by_import);
    EXECUTE format('CREATE TABLE %I (LIKE cost_records INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                   accrued);
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES IN (NULL)', by_import, accrued);
    EXECUTE format('ALTER TABLE cost_records ATTACH PARTITION %I FOR VALUES IN (%L)',
                   by_import, tenant);
END $$;

-- The table an import loads (in its transaction, before it is attached). Its check is what
-- attaching it would otherwise scan every row to prove (`IS NOT NULL` spelled out, or
-- Postgres does not see it).
CREATE FUNCTION cost_records_import_table(tenant uuid, import uuid) RETURNS text
    LANGUAGE plpgsql AS $$
DECLARE
    loaded text := cost_records_table('import', import);
BEGIN
    EXECUTE format('CREATE TABLE %I (LIKE cost_records INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
                        CHECK (tenant_id = %L AND import_id IS NOT NULL AND import_id = %L))',
                   loaded, tenant, import);
    RETURN loaded;
END $$;

-- Indexes an import's loaded table (each built in one pass) and attaches it to its tenant's.
-- A small sample of statistics comes with it (autovacuum takes a full one later): without any,
-- the planner guesses the table holds a sliver of its tenant's rows and sorts them all for a
-- page of records instead of reading the time index.
CREATE FUNCTION cost_records_attach_import(tenant uuid, import uuid) RETURNS void
    LANGUAGE plpgsql SET default_statistics_target = 10 AS $$
DECLARE
    loaded text := cost_records_table('import', import);
BEGIN
    EXECUTE format('CREATE INDEX ON %I (charge_period_start, id)', loaded);
    EXECUTE format('CREATE INDEX ON %I USING brin (id)', loaded);
    EXECUTE format('ANALYZE %I', loaded);
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES IN (%L)',
                   cost_records_table('tenant', tenant), loaded, import);
END $$;

CREATE FUNCTION cost_records_drop_import(import uuid) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP TABLE IF EXISTS %I', cost_records_table('import', import));
END $$;

CREATE FUNCTION cost_records_of_new_tenant() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cost_records_add_tenant(NEW.id);
    RETURN NULL;
END $$;
CREATE TRIGGER tenants_add_cost_records AFTER INSERT ON tenants
    FOR EACH ROW EXECUTE FUNCTION cost_records_of_new_tenant();

CREATE FUNCTION cost_records_of_deleted_tenant() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP TABLE IF EXISTS %I', cost_records_table('tenant', OLD.id));
    RETURN NULL;
END $$;
CREATE TRIGGER tenants_drop_cost_records AFTER DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION cost_records_of_deleted_tenant();

CREATE FUNCTION cost_records_of_deleted_import() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cost_records_drop_import(OLD.id);
    RETURN NULL;
END $$;
CREATE TRIGGER billing_imports_drop_cost_records AFTER DELETE ON billing_imports
    FOR EACH ROW EXECUTE FUNCTION cost_records_of_deleted_import();

-- The records so far move to their tables.
DO $$
DECLARE
    tenant uuid;
    import uuid;
BEGIN
    FOR tenant IN SELECT id FROM tenants LOOP
        PERFORM cost_records_add_tenant(tenant);
    END LOOP;
    FOR tenant, import IN
        SELECT DISTINCT r.tenant_id, r.import_id
        FROM cost_records_unpartitioned r JOIN billing_imports i ON i.id = r.import_id
    LOOP
        EXECUTE format('INSERT INTO %I SELECT * FROM cost_records_unpartitioned WHERE import_id = %L',
                       cost_records_import_table(tenant, import), import);
        PERFORM cost_records_attach_import(tenant, import);
    END LOOP;
    INSERT INTO cost_records
    SELECT r.* FROM cost_records_unpartitioned r JOIN tenants t ON t.id = r.tenant_id
    WHERE r.import_id IS NULL;
END $$;
DROP TABLE cost_records_unpartitioned;
