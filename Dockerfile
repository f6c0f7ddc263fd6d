# The notifier image for the deployed mode (see docker-compose.yml).
# Every process is `notifier <command>`: api, worker, beat, migrate, keys, reconcile.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The dependencies first, exactly as requirements.lock pins them (versions and
# hashes; `make lock` writes it), in a layer of their own that code changes
# do not rebuild; then the project itself, without resolving anything again.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock

COPY pyproject.toml README.md ./
COPY notifier ./notifier
COPY channels ./channels
COPY templates ./templates
COPY config ./config
RUN pip install --no-deps . && pip check

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
