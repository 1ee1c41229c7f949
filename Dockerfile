# syntax=docker/dockerfile:1

# Build: the query data in .sqlx/ lets sqlx check SQL without a database.
FROM rust:1.95-bookworm AS build
WORKDIR /src
ENV SQLX_OFFLINE=true
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY .sqlx .sqlx
COPY vendor vendor
COPY migrations migrations
COPY terraform terraform
COPY data data
COPY src src
RUN cargo build --release --locked \
    && cp target/release/strata /usr/local/bin/strata

# Terraform, from HashiCorp's own image (a static binary).
FROM hashicorp/terraform:1.11.4 AS terraform

# Runtime: PostgreSQL 16's image, for pg_dump and pg_restore of the same major version as the
# server in docker-compose.yml (backups), and /bin/sh (the sandbox provider's local-exec).
FROM postgres:16-bookworm
RUN groupadd --system --gid 10001 strata \
    && useradd --system --uid 10001 --gid 10001 --create-home strata \
    && mkdir -p /home/strata/data/backups \
    && chown -R 10001:10001 /home/strata/data
USER 10001:10001
COPY --from=build /usr/local/bin/strata /usr/local/bin/strata
COPY --from=terraform /bin/terraform /usr/local/bin/terraform
ENV STRATA_BIND=0.0.0.0:8000 \
    STRATA_LOG_FORMAT=json \
    CHECKPOINT_DISABLE=1 \
    STRATA_DATA_DIR=/home/strata/data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=6s --retries=3 CMD ["strata", "healthcheck"]
# The base image stops with SIGINT; Strata shuts down gracefully on SIGTERM (and SIGINT).
STOPSIGNAL SIGTERM
ENTRYPOINT ["strata"]
CMD ["serve"]
