# The registry as an image: slim, runs as an unprivileged user, checks its own health.
# Built by docker-compose.yml; `docker build -t registry .` works on its own too.
# PYTHON_IMAGE: any Debian-based image with Python 3.11 and venv (the tests build one
# from Debian's packages, as Docker Hub is out of their reach).
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE} AS build
WORKDIR /app
COPY pyproject.toml README.md ./
COPY registry ./registry
COPY migrations ./migrations
# Installed in place: the Alembic revisions in /app/migrations ship with the code.
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/venv/bin/pip install --no-cache-dir -e /app

FROM ${PYTHON_IMAGE}
# /data/storage is where compose mounts the blob volume: a new volume takes its owner.
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin registry \
 && mkdir -p /data/storage && chown -R registry /data && chmod 700 /data
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    REGISTRY_DATA_DIR=/data
USER registry
WORKDIR /data
VOLUME /data
EXPOSE 5000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('REGISTRY_HTTP_PORT', '5000'); sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/ready', timeout=2).status != 200)"]
ENTRYPOINT ["registry"]
CMD ["serve"]
