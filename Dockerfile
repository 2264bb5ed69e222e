# syntax=docker/dockerfile:1
# flowpilot worker image.
#   docker build -t flowpilot:latest .
#   docker run --rm -e AWS_REGION=... -e FLOWPILOT_QUEUE_URL=... flowpilot:latest   (runs `flowpilot worker`)
# The ECS task definition in infra/flowpilot.yaml overrides the command with
# `worker --log-format json`.

ARG RUST_IMAGE=rust:1-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# The whole workspace (see .dockerignore): every member's manifest must be present for
# cargo to resolve the workspace, and Cargo.lock pins every dependency (--locked).
COPY . .
# Cache mounts keep the registry and the build directory between builds; the binary is
# copied out because the cache mount is not part of the image layer. Without the default
# `local` feature: no simulator and no demo in the production binary.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --no-default-features --bin flowpilot \
 && install -D -m 0755 target/release/flowpilot /out/flowpilot

# distroless/cc: glibc, libgcc, CA certificates, no shell, runs as uid 65532 (nonroot).
FROM ${RUNTIME_IMAGE}
COPY --from=builder /out/flowpilot /usr/local/bin/flowpilot
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/flowpilot"]
CMD ["worker"]
