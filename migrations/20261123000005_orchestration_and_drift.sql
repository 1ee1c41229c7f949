-- The steps of a task that runs several (an orchestration): each with its status, and the
-- deployments and resources it made, so a client sees how far it got and what was undone.
ALTER TABLE tasks ADD COLUMN steps jsonb NOT NULL DEFAULT '[]';

-- DNS failovers: where a record pointed before, so it can be failed back.
CREATE TABLE dns_failovers (
    id             uuid PRIMARY KEY,
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    task_id        uuid REFERENCES tasks (id) ON DELETE SET NULL,
    dns_provider_id uuid NOT NULL,
    zone           text NOT NULL,
    record_name    text NOT NULL,
    -- The managed dns_record resource, when Strata manages the record.
    record_resource_id uuid REFERENCES resources (id) ON DELETE SET NULL,
    target_resource_id uuid REFERENCES resources (id) ON DELETE SET NULL,
    previous_value text,
    new_value      text NOT NULL,
    status         text NOT NULL DEFAULT 'queued'
                   CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    error          text,
    requested_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    FOREIGN KEY (tenant_id, dns_provider_id) REFERENCES providers (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX dns_failovers_tenant_idx ON dns_failovers (tenant_id, created_at DESC);

-- A refresh reads the real state and records what differs.
ALTER TABLE deployments DROP CONSTRAINT deployments_action_check;
ALTER TABLE deployments ADD CONSTRAINT deployments_action_check
    CHECK (action IN ('stop', 'start', 'terminate', 'health_check', 'refresh'));

-- Set by a sync that found the resource changed outside Strata; cleared by the next apply.
ALTER TABLE resources ADD COLUMN drifted boolean NOT NULL DEFAULT false;

-- What a sync found changed outside Strata: one row per changed attribute.
CREATE TABLE resource_drift (
    id            bigserial PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    resource_id   uuid NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
    deployment_id uuid REFERENCES deployments (id) ON DELETE SET NULL,
    attribute     text NOT NULL,
    expected      jsonb,
    actual        jsonb,
    detected_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX resource_drift_resource_idx ON resource_drift (resource_id, detected_at DESC);

-- The sandbox cloud's view of a resource where it differs from what Strata last applied
-- (changed "behind Strata's back"); an apply makes the cloud match again.
CREATE TABLE sandbox_observed (
    resource_id uuid PRIMARY KEY REFERENCES resources (id) ON DELETE CASCADE,
    outputs     jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
