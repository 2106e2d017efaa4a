# syntax=docker/dockerfile:1
# The one lineage-hub image: `lineage-hub operator`, `lineage-hub consume lineage|otel`,
# and the stage runner `lineage-hub stage <name>` are its commands.
#   docker build -t lineage-hub:dev .      (or: make images)

ARG PYTHON_IMAGE=python:3.11-slim

# ---- console: the browser libraries the gateway serves (pinned by package-lock.json)
FROM node:20-slim AS console
WORKDIR /console
COPY gateway/console/package.json gateway/console/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

# ---- native: the consumers' compiled hot paths (the warehouse writer's decoder, the
# batch digest; Rust, PyO3): one abi3 wheel (CPython 3.11 and later), built with the
# crates pinned by native/Cargo.lock
FROM rust:1-slim-bookworm AS native
RUN apt-get update && apt-get install -y --no-install-recommends python3-venv \
 && rm -rf /var/lib/apt/lists/* && python3 -m venv /opt/maturin
WORKDIR /native
COPY native/ ./
RUN /opt/maturin/bin/pip wheel --no-cache-dir --wheel-dir /wheels .

# ---- build: the project wheel and the wheels of its dependencies
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY lineagehub ./lineagehub
COPY operator ./operator
COPY pipeline_runner ./pipeline_runner
COPY consumers ./consumers
COPY gateway ./gateway
COPY --from=console /console/node_modules ./gateway/console/node_modules
COPY --from=native /wheels/ /wheels/
# stack/ (the local test stack) is dev tooling: no product module imports it.
RUN pip wheel --wheel-dir /wheels .

# ---- runtime: a virtualenv with the wheels, run as a non-root user
FROM ${PYTHON_IMAGE}
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/lineage-hub PATH=/opt/lineage-hub/bin:$PATH \
    HOME=/tmp
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/lineage-hub \
 && /opt/lineage-hub/bin/pip install --no-index --find-links /wheels lineage-hub lineagehub-native \
 && groupadd --gid 10001 lineagehub \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin lineagehub
# The Grafana dashboards' panels, which the console renders with the same SQL.
COPY charts/lineage-hub/dashboards /opt/lineage-hub/dashboards
ENV LINEAGEHUB_DASHBOARDS_DIR=/opt/lineage-hub/dashboards
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["lineage-hub"]
CMD ["--help"]
