# Multi-stage build on Debian bookworm, same build commands as README.md.
FROM debian:bookworm AS build
WORKDIR /src
COPY . .
RUN apt-get update && ./scripts/install-deps.sh && ./scripts/build.sh -DSTAGEGATE_TESTS=OFF

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl3 libstdc++6 libprometheus-cpp-core1.0 \
      ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home stagegate
COPY --from=build /src/build/stagegate /src/build/stagegatectl /src/build/stagegate-mockmodel /usr/local/bin/
COPY --from=build /src/config /etc/stagegate
USER 10001
# 8080: inference traffic; 9901: admin (/metrics, /healthz, /readyz, /api/v1). The demo config
# binds both to 127.0.0.1: mount your own config with 0.0.0.0 listeners.
EXPOSE 8080 9901
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:9901/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/stagegate"]
CMD ["--config", "/etc/stagegate/demo.json"]
