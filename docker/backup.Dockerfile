# The image the standby's EventBridge schedule runs as an ECS task: `python scripts/backup.py`.
# Build with the primary's Postgres major version:
#   docker build -f docker/backup.Dockerfile --build-arg PG_MAJOR=16 -t standby-backup .
FROM python:3.12-slim

ARG PG_MAJOR=16

# PostgreSQL's own apt repository carries every supported client version, built with OpenSSL (Heroku
# Postgres requires TLS). Debian's default client may be older than the server, which pg_dump refuses.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gnupg \
 && install -d /usr/share/postgresql-common/pgdg \
 && curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc \
      https://www.postgresql.org/media/keys/ACCC4CF8.asc \
 && . /etc/os-release \
 && echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt ${VERSION_CODENAME}-pgdg main" \
      > /etc/apt/sources.list.d/pgdg.list \
 && apt-get update \
 && apt-get install -y --no-install-recommends "postgresql-client-${PG_MAJOR}" \
 && curl -fsSL -o /etc/ssl/certs/rds-global-bundle.pem https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem \
 && apt-get purge -y curl gnupg && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*

# The RDS CA bundle above: the tasks verify the standby database's certificate (sslmode=verify-full).
ENV STANDBY_PG_BIN=/usr/lib/postgresql/${PG_MAJOR}/bin \
    STANDBY_RDS_CA_BUNDLE=/etc/ssl/certs/rds-global-bundle.pem \
    PYTHONUNBUFFERED=1

WORKDIR /opt/standby
COPY pyproject.toml README.md ./
COPY src ./src
COPY scripts ./scripts
RUN pip install --no-cache-dir . && useradd --system --uid 10001 standby
USER standby

# The task's environment supplies STANDBY_APP, AWS_REGION and HEROKU_API_KEY (from Secrets Manager).
ENTRYPOINT ["python", "scripts/backup.py"]
