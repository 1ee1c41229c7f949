-- Terraform's state, as its `pg` backend keeps it (schema, sequence, table and index exactly as
-- the backend would create them). Created here once, so that concurrent `terraform init`s do
-- not race to create them; the runs tell the backend to skip its own creation.
CREATE SCHEMA IF NOT EXISTS terraform_state;
CREATE SEQUENCE IF NOT EXISTS public.global_states_id_seq AS bigint;
CREATE TABLE IF NOT EXISTS terraform_state.states (
    id   bigint NOT NULL DEFAULT nextval('public.global_states_id_seq') PRIMARY KEY,
    name text UNIQUE,
    data text
);
CREATE UNIQUE INDEX IF NOT EXISTS states_by_name ON terraform_state.states (name);
