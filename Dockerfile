# One image for every Waypost service; the command picks what runs:
#   docker run IMAGE migrate
#   docker run IMAGE gateway      (or designer, runtime, scheduler, activator)
# Configuration comes only from WAYPOST_* environment variables.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    WAYPOST_HOST=0.0.0.0 \
    WAYPOST_ALLOW_PRIVATE_CONNECTORS=false

WORKDIR /app

# Dependencies first: a source change does not reinstall them.
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock

# Editable install: alembic loads services/*/migrations/versions by path from the source tree.
COPY . .
RUN pip install --no-cache-dir --no-deps -e . \
    && python -m compileall -q gateway services shared waypost \
    && groupadd --system --gid 10001 waypost \
    && useradd --system --uid 10001 --gid waypost --create-home --home-dir /home/waypost \
        --shell /usr/sbin/nologin waypost

USER 10001:10001

EXPOSE 8080 8081 8082 8083 8084

ENTRYPOINT ["waypost"]
CMD ["--help"]
