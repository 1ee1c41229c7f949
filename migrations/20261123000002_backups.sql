-- Backups of the whole database (pg_dump, custom format), each made by a task.
CREATE TABLE backups (
    id          uuid PRIMARY KEY,
    -- The tenant the operator acted in (the task is recorded there); a backup of the whole
    -- database outlives it.
    tenant_id   uuid REFERENCES tenants (id) ON DELETE SET NULL,
    -- Kept when task retention deletes the task.
    task_id     uuid REFERENCES tasks (id) ON DELETE SET NULL,
    status      text NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    file_name   text,
    size_bytes  bigint,
    sha256      text,
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX backups_created_idx ON backups (created_at DESC);
