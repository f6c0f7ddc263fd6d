# The notifier image for the deployed mode (see docker-compose.yml).
# Every process is `notifier <command>`: api, worker, beat, migrate, keys, reconcile.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

COPY pyproject.toml README.md ./
COPY notifier ./notifier
COPY channels ./channels
COPY templates ./templates
COPY config ./config

# flower is not a dependency of the service; the image carries it for the
# `flower` service of docker-compose.yml.
RUN pip install . flower

# Installed as a package, the code does not sit beside config/ and templates/:
# point the settings at the copies in /app.
ENV NOTIFIER_MODE=deployed \
    NOTIFIER_DATA_DIR=/var/lib/notifier \
    NOTIFIER_POLICY_FILE=/app/config/policy.yaml \
    NOTIFIER_TEMPLATES_DIR=/app/templates

RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /var/lib/notifier notifier \
    && mkdir -p /var/lib/notifier \
    && chown notifier:notifier /var/lib/notifier
USER notifier

EXPOSE 8000
ENTRYPOINT ["notifier"]
CMD ["--help"]
