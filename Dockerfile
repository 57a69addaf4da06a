# syntax=docker/dockerfile:1
# edge-gateway: multi-stage release build; small runtime image with CA certificates.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# 1. Dependencies only, cached until Cargo.toml / Cargo.lock change: build against
#    placeholder sources, then throw them away.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src bench examples \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > bench/gateway.rs \
 && echo 'fn main() {}' > examples/relay_stub.rs \
 && cargo build --release --locked \
 && rm -rf src bench examples
# 2. The real sources. Migrations are embedded in the binary at compile time.
COPY src src
COPY migrations migrations
COPY bench bench
COPY examples examples
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin edge-gateway --example relay_stub

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin edge \
 && mkdir -p /data && chown edge:edge /data
COPY --from=build /src/target/release/edge-gateway /usr/local/bin/edge-gateway
COPY --from=build /src/target/release/examples/relay_stub /usr/local/bin/relay_stub
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
