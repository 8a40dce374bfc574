# syntax=docker/dockerfile:1
#
# The shmesh image: the release binary alone on a distroless base, run as a
# non-root user. manifests/shmesh.yaml and the Helm chart run it under this
# name, tagged with the crate version (workspace.package.version in
# Cargo.toml; tests/helm.rs checks they agree):
#
#   docker build -t ghcr.io/shmesh/shmesh:0.1.0 .
#
# .dockerignore keeps target/, .git and everything the build does not read
# out of the context.

# The toolchain CI builds and tests with.
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# build.rs compiles the Envoy .proto files that envoy-types ships with protox,
# in Rust, so no protoc is needed; it reads them from Cargo's registry, which
# the cache mount keeps between builds, as it keeps target/. --locked builds
# exactly what Cargo.lock says.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --package shmesh --bin shmesh \
    && install -D -m 0755 target/release/shmesh /out/shmesh

# glibc and libgcc_s, which the binary links, and nothing else: no shell, no
# package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="shmesh" \
      org.opencontainers.image.description="An Envoy xDS control plane that speaks Istio's traffic API" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/shmesh /usr/local/bin/shmesh
# distroless's nonroot user, by number so that Kubernetes' runAsNonRoot can
# check it; the manifests run the pod as the same uid and gid.
USER 65532:65532
# xDS, xDS over TLS (with a CA), admin and metrics.
EXPOSE 15010 15012 15014
# The manifests give only the arguments (serve --kubernetes ...).
ENTRYPOINT ["/usr/local/bin/shmesh"]
