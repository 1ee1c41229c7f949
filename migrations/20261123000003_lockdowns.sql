-- Emergency lockdowns: who asked, why, over what, and what happened to each vm.
CREATE TABLE lockdowns (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    task_id      uuid REFERENCES tasks (id) ON DELETE SET NULL,
    scope        jsonb NOT NULL,
    action       text NOT NULL CHECK (action IN ('stop', 'terminate')),
    reason       text NOT NULL,
    dry_run      boolean NOT NULL,
    requested_by uuid REFERENCES users (id) ON DELETE SET NULL,
    status       text NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    -- One entry per vm in scope: its id, name, provider, action and outcome.
    results      jsonb NOT NULL DEFAULT '[]',
    created_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
CREATE INDEX lockdowns_tenant_idx ON lockdowns (tenant_id, created_at DESC);
