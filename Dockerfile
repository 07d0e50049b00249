# syntax=docker/dockerfile:1
# MinIODB node image: `miniodb serve` on 8080 (Flight SQL), 8081 (REST), 9090 (metrics).
#
#   docker build -t miniodb/miniodb:latest .
#   docker run --rm -p 8080:8080 -p 8081:8081 -p 9090:9090 -v miniodb-data:/var/lib/miniodb miniodb/miniodb:latest
#
# Settings come from MINIODB_* variables (deploy/miniodb.yaml lists them) or `--config FILE`
# appended to the command; secrets from files through *_FILE variables (Docker/Kubernetes
# secrets). The data dir /var/lib/miniodb holds the WAL, i.e. acknowledged rows not yet in
# the object store: keep it on a persistent volume, one per node. deploy/swarm/ and deploy/k8s/
# run this image; tests/integration/test_deploy_files.py lints this file with hadolint.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: the project wheel and every dependency wheel (no compiler reaches the runtime) ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY clients ./clients
COPY flight_server ./flight_server
COPY gateway ./gateway
COPY bench ./bench
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# ---- runtime ----
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="MinIODB" \
      org.opencontainers.image.description="Columnar analytics server speaking Arrow Flight SQL: durable Arrow ingest, Parquet in object storage, SQL with DuckDB" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/miniodb/miniodb" \
      org.opencontainers.image.documentation="https://github.com/miniodb/miniodb#server-mode"
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# install from the wheels of the build stage only (--no-index: nothing else is fetched)
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels "miniodb==${VERSION}"

# a non-root user owning the data dir; the volume is declared after the chown so it keeps it
RUN groupadd --system --gid 10001 miniodb \
    && useradd --system --uid 10001 --gid miniodb --home-dir /var/lib/miniodb --shell /usr/sbin/nologin miniodb \
    && mkdir -p /var/lib/miniodb \
    && chown miniodb:miniodb /var/lib/miniodb
USER 10001:10001
WORKDIR /var/lib/miniodb
VOLUME ["/var/lib/miniodb"]

EXPOSE 8080 8081 9090

# liveness only (the process serves): never depends on Redis or the object store, so an outage
# marks nothing unhealthy. Readiness (/api/v1/health/ready) is for load balancers. No curl in
# slim images: the image's own Python does the GET (a non-2xx answer raises, exit code 1).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/api/v1/health/live' % os.environ.get('MINIODB_SERVER_REST_PORT', '8081'), timeout=4)"]

# SIGTERM drains (not ready, in-flight work finishes, buffers flush, exit): give the container a
# stop grace period longer than the drain (docker-stack.yml: stop_grace_period).
STOPSIGNAL SIGTERM
# arguments after the image name are appended: `--config /etc/miniodb/miniodb.yaml`, or
# `--data-dir DIR` (the last one wins)
ENTRYPOINT ["miniodb", "serve", "--data-dir", "/var/lib/miniodb"]
CMD []
