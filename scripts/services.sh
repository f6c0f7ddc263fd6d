#!/usr/bin/env bash
# The local services the tests talk to: PostgreSQL, Redis and RabbitMQ on 127.0.0.1.
#
#   scripts/services.sh up       start each one that does not answer, wait until it does
#   scripts/services.sh status   print each one's state
#
# A service whose commands are not installed is skipped with a message (the tests
# that need it then skip, or fail under CI=true). `up` exits non-zero, naming the
# service, when one that is installed cannot be started or does not answer in time.
# Safe to run again and again: a service that answers is left alone.
set -euo pipefail

WAIT_SECONDS="${SERVICES_WAIT_SECONDS:-60}"
HOST=127.0.0.1

have() { command -v "$1" >/dev/null 2>&1; }

# Run "$@" for at most $1 seconds where `timeout` exists (it may not on a laptop).
bounded() {
    local seconds="$1"
    shift
    if have timeout; then
        timeout "$seconds" "$@"
    else
        "$@"
    fi
}

tcp_open() { bounded 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" >/dev/null 2>&1; }

# --- PostgreSQL --------------------------------------------------------------
postgres_installed() { have pg_isready; }
postgres_answers() { bounded 5 pg_isready -q -h "$HOST" -p 5432; }
postgres_can_start() { have pg_ctlcluster && [ -d /etc/postgresql ] && [ -n "$(ls /etc/postgresql)" ]; }
postgres_start() {
    # shellcheck disable=SC2046  # the version folder name, one word
    pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start
}

# --- Redis -------------------------------------------------------------------
redis_installed() { have redis-cli; }
redis_answers() { [ "$(bounded 5 redis-cli -h "$HOST" -p 6379 ping 2>/dev/null)" = "PONG" ]; }
redis_can_start() { have redis-server; }
redis_start() {
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
}

# --- RabbitMQ ----------------------------------------------------------------
rabbitmq_installed() { have rabbitmq-server || have rabbitmqctl; }
rabbitmq_answers() { tcp_open 5672; }
rabbitmq_can_start() { have rabbitmq-server && have rabbitmqctl; }
rabbitmq_start() {
    rabbitmq-server -detached
    # await_startup gives up at once while the Erlang node is not up yet: ask again.
    local deadline=$((SECONDS + WAIT_SECONDS))
    until bounded "$WAIT_SECONDS" rabbitmqctl -q await_startup >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            echo "  rabbitmqctl await_startup did not succeed within ${WAIT_SECONDS}s" >&2
            return 1
        fi
        sleep 2
    done
}

# name:label:address
SERVICES=(
    "postgres:PostgreSQL:$HOST:5432"
    "redis:Redis:$HOST:6379"
    "rabbitmq:RabbitMQ:$HOST:5672"
)

wait_until_answers() {
    local name="$1" label="$2"
    local deadline=$((SECONDS + WAIT_SECONDS))
    until "${name}_answers"; do
        if ((SECONDS >= deadline)); then
            echo "$label: started, but it does not answer after ${WAIT_SECONDS}s" >&2
            return 1
        fi
        sleep 1
    done
}

# Ensure one service answers. Returns 0 when it answers or was skipped, 1 on failure.
ensure() {
    local name="$1" label="$2" address="$3"
    if ! "${name}_installed"; then
        if [ "${CI:-}" = "true" ]; then
            echo "$label: not installed, and CI=true: the tests need it" >&2
            return 1
        fi
        echo "skipping $label: not installed"
        return 0
    fi
    if "${name}_answers"; then
        echo "$label: up ($address)"
        return 0
    fi
    if ! "${name}_can_start"; then
        if [ "${CI:-}" = "true" ]; then
            echo "$label: does not answer on $address and this script cannot start it here" >&2
            return 1
        fi
        echo "skipping $label: does not answer on $address, and its start command is not installed (start it yourself)"
        return 0
    fi
    echo "$label: not answering on $address; starting it"
    if ! "${name}_start"; then
        echo "$label: the start command failed" >&2
        return 1
    fi
    wait_until_answers "$name" "$label" || return 1
    echo "$label: up ($address)"
}

state() {
    local name="$1" label="$2" address="$3"
    if ! "${name}_installed"; then
        echo "$label: not installed"
    elif "${name}_answers"; then
        echo "$label: up ($address)"
    else
        echo "$label: down (not answering on $address)"
    fi
}

cmd_up() {
    local failed=() entry name label address
    for entry in "${SERVICES[@]}"; do
        IFS=: read -r name label address <<<"$entry"
        ensure "$name" "$label" "$address" || failed+=("$label")
    done
    if ((${#failed[@]})); then
        echo "services.sh: failed to start: ${failed[*]}" >&2
        return 1
    fi
}

cmd_status() {
    local entry name label address
    for entry in "${SERVICES[@]}"; do
        IFS=: read -r name label address <<<"$entry"
        state "$name" "$label" "$address"
    done
}

case "${1:-}" in
    up) cmd_up ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 up|status" >&2
        exit 2
        ;;
esac
