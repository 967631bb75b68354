# One image for web, worker and beat (docker-compose.yml or the Procfile picks the command;
# the sync worker runs the threads pool, README "Architecture").
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DJANGO_SETTINGS_MODULE=config.settings.production

RUN useradd --create-home --uid 1000 paysync
WORKDIR /app
COPY pyproject.toml ./
RUN pip install --upgrade pip && pip install .
COPY . .
# collectstatic needs settings that import; these build-time values never reach runtime.
RUN SECRET_KEY=build DATABASE_URL=postgres://build@localhost/build REDIS_URL=redis://localhost \
    FIELD_ENCRYPTION_KEYS=YnVpbGQtdGltZS1vbmx5LWtleS1ub3QtcnVudGltZSE= \
    AUTOTASK_INTEGRATION_CODE=build ALLOWED_HOSTS=build STATIC_ROOT=/app/staticfiles \
    python manage.py collectstatic --noinput -v 0 \
    && mkdir -p /app/var && chown -R paysync /app/var
USER paysync
ENV STATIC_ROOT=/app/staticfiles PAYSYNC_VAR_DIR=/app/var
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "4", "--access-logfile", "-"]
