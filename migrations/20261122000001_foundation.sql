-- Foundation: users, tenants and their members, API keys, credentials, providers, tasks.
-- Every tenant-owned row carries tenant_id; deleting a tenant deletes what it owns.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    email         text NOT NULL,
    password_hash text NOT NULL,
    full_name     text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- Emails are compared case-insensitively: Bob@x.io and bob@x.io are one account.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE tenants (
    id                uuid PRIMARY KEY,
    name              text NOT NULL,
    subscription_tier text NOT NULL DEFAULT 'free'
                      CHECK (subscription_tier IN ('free', 'basic', 'premium')),
    settings          jsonb NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenant_members (
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       text NOT NULL CHECK (role IN ('admin', 'member', 'viewer')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX tenant_members_user_idx ON tenant_members (user_id, created_at);

-- A member added by e-mail before they have an account; signup turns it into a membership.
CREATE TABLE tenant_invitations (
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    email      text NOT NULL,
    role       text NOT NULL CHECK (role IN ('admin', 'member', 'viewer')),
    invited_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, email)
);
CREATE INDEX tenant_invitations_email_idx ON tenant_invitations (lower(email));

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         text NOT NULL,
    -- The first characters of the key, shown in lists so a user can tell keys apart.
    prefix       text NOT NULL,
    -- SHA-256 of the whole key: keys are long random strings, so a fast hash is enough.
    key_hash     bytea NOT NULL UNIQUE,
    role         text NOT NULL CHECK (role IN ('admin', 'member', 'viewer')),
    created_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    expires_at   timestamptz,
    last_used_at timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id, created_at);

CREATE TABLE credentials (
    id         uuid PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider   text NOT NULL,
    name       text NOT NULL,
    region     text,
    -- Identifiers that are not secret (account, project, subscription ids), for display.
    metadata   jsonb NOT NULL DEFAULT '{}',
    -- AES-256-GCM: 12-byte nonce followed by the ciphertext of the JSON secret fields.
    secret     bytea NOT NULL,
    is_active  boolean NOT NULL DEFAULT true,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name),
    UNIQUE (tenant_id, id)
);

CREATE TABLE providers (
    id                      uuid PRIMARY KEY,
    tenant_id               uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider_type           text NOT NULL CHECK (provider_type IN
                            ('sandbox', 'aws', 'azure', 'gcp', 'oci', 'proxmox', 'cloudflare', 'databricks')),
    display_name            text NOT NULL,
    region                  text,
    credential_id           uuid,
    account_number          text,
    owner_email             text,
    settings                jsonb NOT NULL DEFAULT '{}',
    health_status           text CHECK (health_status IN ('healthy', 'degraded', 'unreachable')),
    health_response_time_ms integer,
    health_error            text,
    health_checked_at       timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, display_name),
    -- A provider can only use a credential of its own tenant. NO ACTION (checked at the end of
    -- the statement) so that deleting a tenant may cascade to both rows.
    FOREIGN KEY (tenant_id, credential_id) REFERENCES credentials (tenant_id, id)
);

-- The record of every piece of long work. apalis only delivers `{task_id}`; this row is the truth.
CREATE TABLE tasks (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind             text NOT NULL,
    status           text NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    params           jsonb NOT NULL DEFAULT '{}',
    queue            text NOT NULL,
    -- The apalis job id (a ULID), assigned before the push.
    job_id           text NOT NULL UNIQUE,
    attempts         integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL DEFAULT 3,
    progress         smallint NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    progress_message text,
    result           jsonb,
    error            text,
    worker           text,
    created_by       uuid REFERENCES users (id) ON DELETE SET NULL,
    cancel_requested boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tasks_tenant_created_idx ON tasks (tenant_id, created_at DESC);
CREATE INDEX tasks_status_idx ON tasks (status) WHERE status IN ('queued', 'running');

-- The side effect of the `diagnostic.record` task kind, used to prove exactly-once effects.
CREATE TABLE diagnostic_effects (
    id         bigserial PRIMARY KEY,
    task_id    uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    worker     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX diagnostic_effects_task_idx ON diagnostic_effects (task_id);
