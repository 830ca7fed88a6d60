# Assay in a container: the release binary on a slim Debian, running as a non-root user.
#
#   docker build -t assay:local .
#   docker run --rm -v "$PWD:/project" -w /project assay:local run
#
# deploy/compose.yaml runs replicas of it behind Nginx with Redis (see the README).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p assay \
    && install -D target/release/assay /out/assay

FROM debian:bookworm-slim
# CA roots for S3, Azure and OIDC over HTTPS; nothing else beside the binary.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /nonexistent --shell /usr/sbin/nologin assay \
    && mkdir -p /lake /project \
    && chown assay:assay /lake
COPY --from=build /out/assay /usr/local/bin/assay
USER assay:assay
WORKDIR /project
# REST gateway, Flight SQL.
EXPOSE 8080 50051
ENTRYPOINT ["/usr/local/bin/assay"]
CMD ["serve", "--http-addr", "0.0.0.0:8080", "--flight-addr", "0.0.0.0:50051"]
