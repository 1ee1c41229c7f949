-- Billing imports: a file (uploaded in chunks, or fetched from a URL by the worker) loaded as
-- cost records in one transaction.
CREATE TABLE billing_imports (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    task_id       uuid REFERENCES tasks (id) ON DELETE SET NULL,
    provider_id   uuid,
    -- `upload` or `url`; the URL (never its query string, which may hold a signature) for show.
    source        text NOT NULL CHECK (source IN ('upload', 'url')),
    url           text,
    filename      text,
    -- As asked (`auto` to detect it from the header) and as found.
    format        text NOT NULL DEFAULT 'auto',
    detected_format text,
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    bytes         bigint NOT NULL DEFAULT 0,
    rows_read     bigint NOT NULL DEFAULT 0,
    rows_loaded   bigint NOT NULL DEFAULT 0,
    rows_rejected bigint NOT NULL DEFAULT 0,
    rows_replaced bigint NOT NULL DEFAULT 0,
    -- Up to 20 rejected rows: line number and reason.
    rejected_examples jsonb NOT NULL DEFAULT '[]',
    -- {currency: {billed_cost, effective_cost, list_cost}}
    totals        jsonb NOT NULL DEFAULT '{}',
    period_start  timestamptz,
    period_end    timestamptz,
    error         text,
    created_by    uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    FOREIGN KEY (tenant_id, provider_id) REFERENCES providers (tenant_id, id) ON DELETE SET NULL (provider_id)
);
CREATE INDEX billing_imports_tenant_idx ON billing_imports (tenant_id, created_at DESC);

-- An uploaded file, in the order it arrived, until its import has run.
CREATE TABLE billing_import_chunks (
    import_id uuid NOT NULL REFERENCES billing_imports (id) ON DELETE CASCADE,
    seq       integer NOT NULL,
    data      bytea NOT NULL,
    PRIMARY KEY (import_id, seq)
);

-- Charges, aligned with FOCUS 1.2. Amounts are exact decimals in their billing currency.
CREATE TABLE cost_records (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id            uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    import_id            uuid REFERENCES billing_imports (id) ON DELETE CASCADE,
    provider_id          uuid,
    -- The Strata resource the charge belongs to (its cloud id is the ResourceId).
    resource_ref         uuid REFERENCES resources (id) ON DELETE SET NULL,
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
    -- Databricks (seed 000).
    workspace_id         text,
    cluster_id           text,
    job_id               text,
    user_email           text,
    sku_name             text,
    dbu_count            numeric,
    dbu_rate             numeric
);
CREATE INDEX cost_records_tenant_period_idx ON cost_records (tenant_id, charge_period_start);
CREATE INDEX cost_records_import_idx ON cost_records (import_id);

-- Daily sums per dimension, kept by the imports (dashboards read these, not the records).
CREATE TABLE cost_daily (
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    day              date NOT NULL,
    billing_currency text NOT NULL,
    provider_name    text NOT NULL,
    service_name     text NOT NULL,
    service_category text NOT NULL,
    region_id        text NOT NULL,
    sub_account_id   text NOT NULL,
    billed_cost      numeric NOT NULL,
    effective_cost   numeric NOT NULL,
    list_cost        numeric NOT NULL,
    records          bigint NOT NULL
);
CREATE INDEX cost_daily_tenant_day_idx ON cost_daily (tenant_id, day);
