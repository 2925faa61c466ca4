# tagwatch container image.
#
#   docker build --build-arg TAGWATCH_GIT_COMMIT="$(git rev-parse --short=12 HEAD)" \
#     -t ghcr.io/tagwatch/tagwatch:0.1.0 .
#
# The image holds the same binary CI tests: the same Cargo.lock (`--locked` refuses to build if it
# is stale), the release profile from Cargo.toml, the `tagwatch` bin target and nothing else.

# ---- build ----------------------------------------------------------------------------------
# Debian 12 (bookworm), like the runtime image below: the binary links the glibc it will run on.
FROM rust:1-bookworm AS builder
WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when a manifest or Cargo.lock
# changes, not on every source edit. Cargo needs every workspace member's manifest and a target
# file for each declared target, so empty stand-ins take the sources' place for this step. They
# are removed afterwards, with the stand-in tagwatch crate's build records, so that the real crate
# is always compiled below, whatever the sources' timestamps are.
COPY Cargo.toml Cargo.lock ./
COPY tests/testbed/Cargo.toml tests/testbed/Cargo.toml
RUN mkdir -p src benches tests/testbed/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs benches/engine.rs benches/webhook_latency.rs benches/poll_latency.rs benches/signatures.rs tests/testbed/src/lib.rs \
 && cargo build --release --locked --bin tagwatch \
 && rm -rf src benches tests/testbed/src \
           target/release/.fingerprint/tagwatch-* \
           target/release/deps/tagwatch-* target/release/deps/libtagwatch-*

# The build context has no .git (see .dockerignore): build.rs stamps this commit into the
# `tagwatch_build_info` metric instead ("unknown" when not given). Declared after the dependency
# layer so that a new commit does not rebuild the dependencies.
ARG TAGWATCH_GIT_COMMIT=""
COPY . .
RUN cargo build --release --locked --bin tagwatch \
 && install -D -m 0755 target/release/tagwatch /out/tagwatch

# ---- runtime --------------------------------------------------------------------------------
# distroless "cc": glibc, libgcc_s (the binary is dynamically linked; aws-lc-rs needs libc),
# CA certificates for HTTPS registries, /etc/passwd with the `nonroot` user, and no shell or
# package manager. Debian 12, matching the builder's glibc.
FROM gcr.io/distroless/cc-debian12:nonroot

COPY --from=builder /out/tagwatch /usr/local/bin/tagwatch

# The distroless `nonroot` user, numeric so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532

# /metrics, /healthz and /readyz (`--listen`, default 0.0.0.0:9809).
EXPOSE 9809

ENTRYPOINT ["/usr/local/bin/tagwatch"]
CMD ["run"]
