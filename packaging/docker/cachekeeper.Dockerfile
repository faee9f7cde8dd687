# The cachekeeper image used by the Kubernetes manifests: both binaries, nothing else.
# Build from the repository root:  docker build -f packaging/docker/cachekeeper.Dockerfile -t cachekeeper .

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin cachekeeper --bin cachekeeperctl

FROM debian:bookworm-slim
COPY --from=build /src/target/release/cachekeeper /src/target/release/cachekeeperctl /usr/local/bin/
ENTRYPOINT ["cachekeeper"]
