# Image for the three services (command, projector, query); docker-compose.yml picks the
# entry point:  python -m services.command | services.projector | services.query
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY . .
# Installs the dependencies (and the packages). The services run from /app (python -m puts
# the working directory first on sys.path), so files found relative to the source tree,
# such as migrations/*.sql, are there.
RUN pip install . \
 && useradd --system --uid 10001 --home-dir /app flags

USER flags
EXPOSE 8081 8082
CMD ["python", "-m", "services.query"]
