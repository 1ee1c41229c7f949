-- The sandbox's DNS service: zones and records kept the way a DNS host keeps them, so sandbox
-- dns_record resources meet the same conflicts and missing records as Cloudflare's.
CREATE TABLE sandbox_dns_zones (
    id          text PRIMARY KEY,
    provider_id uuid NOT NULL REFERENCES providers (id) ON DELETE CASCADE,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider_id, name)
);

CREATE TABLE sandbox_dns_records (
    id          text PRIMARY KEY,
    zone_id     text NOT NULL REFERENCES sandbox_dns_zones (id) ON DELETE CASCADE,
    -- The fully qualified name, as DNS hosts report it.
    name        text NOT NULL,
    record_type text NOT NULL,
    content     text NOT NULL,
    ttl         integer NOT NULL,
    proxied     boolean NOT NULL DEFAULT false,
    created_on  timestamptz NOT NULL DEFAULT now(),
    modified_on timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sandbox_dns_records_name_idx ON sandbox_dns_records (zone_id, name);
