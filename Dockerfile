# registry-gatekeeper image: `gatekeeper serve` as a non-root user on port 5000.
#
#   docker build -t registry-gatekeeper .
#   docker run -p 5000:5000 -e GATEKEEPER_UPSTREAM_URL=http://registry:5000 registry-gatekeeper
#
# The default config below listens on 0.0.0.0:5000 and keeps SQLite under /var/lib/gatekeeper;
# mount your own file over /etc/gatekeeper/gatekeeper.toml (see config/gatekeeper.example.toml)
# or set GATEKEEPER_* variables, which win over the file. Other subcommands run the same way:
#   docker run --rm registry-gatekeeper db upgrade

# --- build: install into a venv that the runtime stage copies whole ---------------------------
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/gatekeeper
WORKDIR /src
# Dependencies alone first: this layer is rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" >/tmp/requirements.txt \
 && /opt/gatekeeper/bin/pip install -r /tmp/requirements.txt
COPY . .
RUN /opt/gatekeeper/bin/pip install --no-deps . \
 && /opt/gatekeeper/bin/gatekeeper --help >/dev/null

# --- runtime ----------------------------------------------------------------------------------
FROM python:3.11-slim
ENV PATH=/opt/gatekeeper/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/gatekeeper --create-home \
        --shell /usr/sbin/nologin gatekeeper \
 && install -d -o gatekeeper -g gatekeeper /var/lib/gatekeeper/audit-spool \
 && mkdir -p /etc/gatekeeper \
 && printf '%s\n' \
        '# Container defaults; mount your own file here (see config/gatekeeper.example.toml).' \
        '# GATEKEEPER_* environment variables win over this file.' \
        'listen = "0.0.0.0:5000"' \
        'database_url = "sqlite+aiosqlite:////var/lib/gatekeeper/gatekeeper.db"' \
        >/etc/gatekeeper/gatekeeper.toml
COPY --from=build /opt/gatekeeper /opt/gatekeeper

USER gatekeeper
WORKDIR /var/lib/gatekeeper
EXPOSE 5000
# The slim image has no curl; Python's urllib fails (exit 1) on anything but a 2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/healthz', timeout=4)"]
# Exec form: the gatekeeper is PID 1 and gets SIGTERM itself, so it flushes the access log.
ENTRYPOINT ["gatekeeper"]
CMD ["serve", "--config", "/etc/gatekeeper/gatekeeper.toml"]
