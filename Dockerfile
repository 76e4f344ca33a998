# Multi-stage build on Debian bookworm, same build commands as README.md, tests off.
# docker build -t stagegate:latest .   (.dockerignore keeps the host's build trees out)
FROM debian:bookworm AS build
WORKDIR /src
# Only what building the binaries takes (install-deps.sh --build: no promtool, etcd, GoogleTest
# or Node.js, which only the test suite uses), installed before the sources are copied so that
# a source change reuses this layer.
COPY scripts/install-deps.sh scripts/
RUN ./scripts/install-deps.sh --build && rm -rf /var/lib/apt/lists/*
COPY . .
RUN ./scripts/build.sh -DSTAGEGATE_TESTS=OFF

# The runtime packages are what scripts/runtime-packages.sh derives from ldd of the binaries;
# tests/deploy/check_dockerfile.sh fails the test suite when this list misses one.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libc6 libgcc-s1 libstdc++6 libssl3 libnghttp2-14 \
      libprometheus-cpp-core1.0 libboost-program-options1.81.0 libboost-url1.81.0 \
      ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home stagegate \
 && mkdir -p /var/lib/stagegate && chown 10001:10001 /var/lib/stagegate
COPY --from=build /src/build/stagegate /src/build/stagegatectl /src/build/stagegate-mockmodel /usr/local/bin/
COPY --from=build /src/config /etc/stagegate
USER 10001
# The state directory (rollout state, event log) must outlive the container; the config
# directory is where to mount your own config.
WORKDIR /var/lib/stagegate
VOLUME ["/var/lib/stagegate", "/etc/stagegate"]
# 8080: inference traffic; 9901: admin (/metrics, /healthz, /readyz, /api/v1). The demo config
# binds both to 127.0.0.1: mount your own config with 0.0.0.0 listeners.
EXPOSE 8080 9901
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:9901/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/stagegate"]
CMD ["--config", "/etc/stagegate/demo.json"]
