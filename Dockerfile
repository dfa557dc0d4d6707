# Image for the services (command, projector, query, console); docker-compose.yml picks the
# entry point:  python -m services.command | services.projector | services.query | services.console

# The console's front-end libraries, from the npm registry at build time (the runtime image has
# no node): `npm ci` installs exactly what services/console/assets/package-lock.json pins,
# integrity-checked, as scripts/console-assets does outside Docker. No CDN at run time.
FROM node:22-slim AS console-assets
WORKDIR /assets
COPY services/console/assets/package.json services/console/assets/package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund --loglevel=error \
 && mkdir vendor \
 && cp node_modules/htmx.org/dist/htmx.min.js node_modules/htmx-ext-sse/dist/sse.min.js vendor/

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY . .
COPY --from=console-assets /assets/vendor/ services/console/static/vendor/
# Installs the dependencies (and the packages). The services run from /app (python -m puts
# the working directory first on sys.path), so files found relative to the source tree,
# such as migrations/*.sql, are there.
RUN pip install . \
 && useradd --system --uid 10001 --home-dir /app flags

USER flags
EXPOSE 8081 8082 8083
CMD ["python", "-m", "services.query"]
