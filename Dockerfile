# The proxy and its first-party plugins (clock, calculator, mcp), as a sidecar or a service.
#   docker build -t openai-tool-proxy:0.1.0 .
#   docker run --rm -p 8080:8080 -e TOOL_PROXY_UPSTREAM=https://api.openai.com/v1 openai-tool-proxy:0.1.0
# Configured by the same TOOL_PROXY_* environment as `openai-tool-proxy serve` (README,
# Configuration). More plugins: a derived image, deploy/examples/plugin.Dockerfile.

# Build: the README's install command, into a virtual environment the runtime stage copies whole
# (the proxy's and the plugins' wheels built here; no build tools reach the runtime image).
FROM python:3.12-slim AS build
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY plugins ./plugins
RUN pip install --no-cache-dir . ./plugins/clock ./plugins/calculator ./plugins/mcp

FROM python:3.12-slim
# tini as PID 1: it reaps the orphans a tool's subprocesses leave (the kernel hands them to PID 1,
# and Python's serving process does not wait for them: zombies) and passes signals on to the proxy.
RUN apt-get update \
    && apt-get install -y --no-install-recommends 'tini=0.19.0-*' \
    && rm -rf /var/lib/apt/lists/*
# A fixed numeric id, so Kubernetes can check runAsNonRoot without a name lookup.
RUN useradd --system --uid 10001 --gid 0 --no-create-home --shell /usr/sbin/nologin proxy
COPY --from=build /opt/venv /opt/venv
# Listening on every interface is what a container needs; without TOOL_PROXY_API_KEYS the proxy
# warns at start that anyone reaching the port can use the upstream — set keys, or keep the port
# inside the pod (a sidecar reached on localhost).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TOOL_PROXY_UPSTREAM=https://api.openai.com/v1 \
    TOOL_PROXY_HOST=0.0.0.0 \
    TOOL_PROXY_PORT=8080
USER 10001
EXPOSE 8080
# The proxy drains on SIGTERM (TOOL_PROXY_DRAIN_TIMEOUT, 20 s): give `docker stop` a longer -t.
STOPSIGNAL SIGTERM
# Liveness only (the process serves): readiness, which checks the store, is for orchestrators.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:%s/health/liveness' % os.environ.get('TOOL_PROXY_PORT', '8080'), timeout=2)"]
ENTRYPOINT ["tini", "--"]
CMD ["openai-tool-proxy", "serve"]
