# syntax=docker/dockerfile:1

# Build: the query data in .sqlx/ lets sqlx check SQL without a database.
FROM rust:1.95-bookworm AS build
WORKDIR /src
ENV SQLX_OFFLINE=true
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY .sqlx .sqlx
COPY migrations migrations
COPY src src
RUN cargo build --release --locked \
    && cp target/release/strata /usr/local/bin/strata

# Terraform, from HashiCorp's own image (a static binary).
FROM hashicorp/terraform:1.11.4 AS terraform

# Runtime: glibc and CA certificates only, running as an unprivileged user.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/strata /usr/local/bin/strata
COPY --from=terraform /bin/terraform /usr/local/bin/terraform
ENV STRATA_BIND=0.0.0.0:8000 \
    STRATA_LOG_FORMAT=json \
    CHECKPOINT_DISABLE=1
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=6s --retries=3 CMD ["strata", "healthcheck"]
ENTRYPOINT ["strata"]
CMD ["serve"]
