-- The service catalog (seed 003): service categories (the FOCUS 1.2 ServiceCategory values built
-- in, plus each tenant's own), a tenant's service → category mappings, the services billing
-- imports saw with no category, and utilisation samples of resources. And the Databricks
-- workspaces a tenant registers (seed 000).

CREATE TABLE service_categories (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- NULL for the built-in categories every tenant sees.
    tenant_id     uuid REFERENCES tenants (id) ON DELETE CASCADE,
    category_name text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
-- Names are unique case-insensitively among the built-ins and within a tenant; a tenant's name
-- that repeats a built-in one is refused by the API.
CREATE UNIQUE INDEX service_categories_builtin_name_key ON service_categories (lower(category_name))
    WHERE tenant_id IS NULL;
CREATE UNIQUE INDEX service_categories_tenant_name_key ON service_categories (tenant_id, lower(category_name))
    WHERE tenant_id IS NOT NULL;
INSERT INTO service_categories (category_name)
SELECT unnest(ARRAY[
    'AI and Machine Learning', 'Analytics', 'Business Applications', 'Compute', 'Databases',
    'Developer Tools', 'Multicloud', 'Identity', 'Integration', 'Internet of Things',
    'Management and Governance', 'Media', 'Migration', 'Mobile', 'Networking', 'Security',
    'Storage', 'Web', 'Other'
]);

-- A service of a cloud and the category its charges belong to.
CREATE TABLE services (
    id             uuid PRIMARY KEY,
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- Compared case-insensitively with the ProviderName of cost records.
    cloud_provider text NOT NULL,
    -- Either matches the ServiceName of cost records.
    service_code   text NOT NULL,
    service_name   text NOT NULL,
    category_id    uuid NOT NULL REFERENCES service_categories (id),
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX services_provider_code_key ON services (tenant_id, lower(cloud_provider), service_code);

-- Services billing imports saw whose charges have no category (none, empty or `Other`).
CREATE TABLE unmapped_services (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider_name  text NOT NULL,
    service_name   text NOT NULL,
    -- When an import first and last saw the service.
    first_seen     timestamptz NOT NULL DEFAULT now(),
    last_seen      timestamptz NOT NULL DEFAULT now(),
    last_import_id uuid REFERENCES billing_imports (id) ON DELETE SET NULL,
    -- The service's records without a category in the last import that saw it, and their
    -- billed cost: {currency: amount as a decimal string}.
    record_count   bigint NOT NULL,
    billed_cost    jsonb NOT NULL DEFAULT '{}',
    CONSTRAINT unmapped_services_service_key UNIQUE (tenant_id, provider_name, service_name)
);

-- CPU and memory utilisation of a resource at a moment.
CREATE TABLE usage_samples (
    id             uuid PRIMARY KEY,
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    resource_id    uuid NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
    cpu_percent    double precision NOT NULL CHECK (cpu_percent BETWEEN 0 AND 100),
    memory_percent double precision NOT NULL CHECK (memory_percent BETWEEN 0 AND 100),
    sampled_at     timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX usage_samples_resource_idx ON usage_samples (resource_id, sampled_at DESC);
CREATE INDEX usage_samples_tenant_idx ON usage_samples (tenant_id, sampled_at DESC);

-- Databricks workspaces, by their own workspace id.
CREATE TABLE workspaces (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    workspace_id text NOT NULL,
    name         text NOT NULL,
    host         text NOT NULL,
    cloud        text NOT NULL CHECK (cloud IN ('aws', 'azure', 'gcp')),
    region       text NOT NULL,
    plan         text NOT NULL CHECK (plan IN ('standard', 'premium', 'enterprise')),
    status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT workspaces_workspace_id_key UNIQUE (tenant_id, workspace_id)
);
