-- Per-tenant settings. Only keys Strata knows are stored (checked by the API); a key with no row
-- has its default.
CREATE TABLE tenant_settings (
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key        text NOT NULL,
    value      jsonb NOT NULL,
    updated_by uuid REFERENCES users (id) ON DELETE SET NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);

-- Periodic work, per tenant. Every worker process runs a scheduler; a schedule fires when its
-- interval has passed since last_run_at, under its row lock, in the transaction that enqueues
-- its task, so it fires once per interval however many workers there are.
CREATE TABLE schedules (
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         text NOT NULL,
    last_run_at  timestamptz,
    last_task_id uuid REFERENCES tasks (id) ON DELETE SET NULL,
    runs         bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, name)
);
