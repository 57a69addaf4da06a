# syntax=docker/dockerfile:1
# edge-gateway: multi-stage release build; small runtime image with CA certificates.
# The default target is the production image (the gateway only). `--target demo` adds
# the relay stub for the local compose stack; production images never carry test code.

FROM docker.io/library/rust:1.95-slim-bookworm AS build
WORKDIR /src
# 1. Dependencies only, cached until Cargo.toml / Cargo.lock change: build against
#    placeholder sources, then throw them away.
#    Every workspace member's manifest is needed (tests/api/deploy/image.rs replays this
#    stage with `cargo metadata`); .cargo/config.toml holds the SQLite build flags.
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY crates/relay-stub/Cargo.toml crates/relay-stub/Cargo.toml
COPY crates/testkit/Cargo.toml crates/testkit/Cargo.toml
RUN mkdir -p src bench examples crates/relay-stub/src crates/testkit/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > bench/gateway.rs \
 && echo 'fn main() {}' > examples/hyper_limit.rs \
 && echo 'fn main() {}' > crates/relay-stub/src/main.rs \
 && touch crates/relay-stub/src/lib.rs crates/testkit/src/lib.rs \
 && cargo build --release --locked --bin edge-gateway \
 && rm -rf src bench examples crates/relay-stub/src crates/testkit/src
# 2. The real sources. Migrations are embedded in the binary at compile time.
COPY src src
COPY migrations migrations
COPY bench bench
COPY examples examples
COPY crates crates
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin edge-gateway

FROM build AS stub-build
RUN cargo build --release --locked -p relay-stub

FROM docker.io/library/debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin edge \
 && mkdir -p /data && chown edge:edge /data
COPY --from=build /src/target/release/edge-gateway /usr/local/bin/edge-gateway
COPY deploy/entrypoint.sh /usr/local/bin/entrypoint.sh
ENV PORT=8080 \
    BIND=0.0.0.0 \
    SQLITE_PATH=/data/edge-gateway.db
VOLUME ["/data"]
EXPOSE 8080
# The entrypoint hands /data to the `edge` user (Fly volumes are mounted owned by root)
# and runs the gateway as `edge`, never as root.
ENTRYPOINT ["/usr/local/bin/entrypoint.sh"]
CMD ["edge-gateway", "serve"]

# The compose stack's relay stub: the runtime image plus the stub binary.
FROM runtime AS demo
COPY --from=stub-build /src/target/release/relay_stub /usr/local/bin/relay_stub

# Default target: the production image.
FROM runtime
