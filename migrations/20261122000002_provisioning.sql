-- Provisioning: resources, their deployments (Terraform runs) and the deployments' logs.

ALTER TABLE providers ADD CONSTRAINT providers_tenant_id_id_key UNIQUE (tenant_id, id);

CREATE TABLE resources (
    id                     uuid PRIMARY KEY,
    tenant_id              uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider_id            uuid NOT NULL,
    kind                   text NOT NULL CHECK (kind IN ('vm', 'storage', 'network', 'dns_record', 'cluster')),
    name                   text NOT NULL,
    region                 text,
    spec                   jsonb NOT NULL DEFAULT '{}',
    tags                   jsonb NOT NULL DEFAULT '{}',
    status                 text NOT NULL CHECK (status IN
                           ('provisioning', 'active', 'stopped', 'updating', 'destroying', 'destroyed', 'failed')),
    power_state            text NOT NULL DEFAULT 'running' CHECK (power_state IN ('running', 'stopped')),
    -- Terraform outputs: the cloud's own id, IPs, and whatever else the template reports.
    attributes             jsonb NOT NULL DEFAULT '{}',
    cloud_id               text,
    cost_per_hour          double precision,
    estimated_monthly_cost double precision,
    created_by             uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    last_synced            timestamptz,
    destroyed_at           timestamptz,
    FOREIGN KEY (tenant_id, provider_id) REFERENCES providers (tenant_id, id)
);
-- A live resource's name is unique per provider and kind; destroyed ones are history.
CREATE UNIQUE INDEX resources_live_name_key ON resources (tenant_id, provider_id, kind, name)
    WHERE status <> 'destroyed';
CREATE INDEX resources_tenant_idx ON resources (tenant_id, created_at DESC);

CREATE TABLE deployments (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    resource_id   uuid NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
    task_id       uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    operation     text NOT NULL CHECK (operation IN ('apply', 'destroy', 'action')),
    action        text CHECK (action IN ('stop', 'start', 'terminate', 'health_check')),
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    -- Why a queued deployment waits (another deployment of the same resource runs first).
    waiting_reason text,
    -- What the deployment applies: the resource's spec, tags and power state at request time.
    desired       jsonb NOT NULL DEFAULT '{}',
    plan_summary  jsonb,
    progress      jsonb NOT NULL DEFAULT '{}',
    outputs       jsonb,
    diagnostics   jsonb NOT NULL DEFAULT '[]',
    error         text,
    attempts      integer NOT NULL DEFAULT 0,
    requested_by  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz
);
CREATE INDEX deployments_resource_idx ON deployments (resource_id, created_at);
CREATE INDEX deployments_open_idx ON deployments (resource_id) WHERE status IN ('queued', 'running');

-- Every line a deployment's Terraform run wrote, in order. seq is gapless per deployment.
CREATE TABLE deployment_logs (
    deployment_id uuid NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    seq           bigint NOT NULL,
    ts            timestamptz NOT NULL DEFAULT clock_timestamp(),
    level         text NOT NULL,
    type          text NOT NULL,
    message       text NOT NULL,
    PRIMARY KEY (deployment_id, seq)
);

-- The first answer to a POST with an Idempotency-Key, replayed for repeats of it.
CREATE TABLE idempotency_keys (
    scope        text NOT NULL,
    key          text NOT NULL,
    request_hash bytea NOT NULL,
    -- NULL while the first request is still being answered.
    status       smallint,
    content_type text,
    body         bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
