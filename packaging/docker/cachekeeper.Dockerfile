# The cachekeeper image the example Dockerfile and the Kubernetes manifests use: both
# binaries, nothing else. Build from the repository root:
#   docker build -f packaging/docker/cachekeeper.Dockerfile -t cachekeeper .
# The images are build arguments (a mirror or a pinned digest needs no edit):
#   --build-arg BUILD_IMAGE=... --build-arg RUNTIME_IMAGE=...

ARG BUILD_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin cachekeeper --bin cachekeeperctl

FROM ${RUNTIME_IMAGE}
COPY --from=build /src/target/release/cachekeeper /src/target/release/cachekeeperctl /usr/local/bin/
ENTRYPOINT ["cachekeeper"]
