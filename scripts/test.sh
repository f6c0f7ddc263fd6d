#!/usr/bin/env bash
# The whole test suite, as `make test` runs it: in two parts.
#
#   1. every test but those marked `machine`, in TEST_PROCESSES pytest processes
#      (pytest-xdist, a test file per process at a time; default: one more than the
#      machine's cores). Most of the suite waits on workers, brokers and simulators
#      rather than computing: on 2 cores, 3 processes took this part from 19 minutes
#      (one process) to about 7.5. Each process builds its own stacks (databases,
#      broker vhosts, Redis databases), so they never meet.
#   2. the tests marked `machine` (they stop RabbitMQ, Redis or PostgreSQL, which
#      every stack of part 1 uses, and the fault table calibrates against an otherwise
#      quiet machine) alone, in one process.
#
# Arguments go to both parts (e.g. a file, or -k). A part that selects no test is fine
# as long as the other selected some; pytest's "no tests collected" for both is a failure.
# The first failing part's exit code is kept.
set -uo pipefail

PYTEST="${PYTEST:-.venv/bin/pytest}"
PROCESSES="${TEST_PROCESSES:-$(($(nproc 2>/dev/null || echo 1) + 1))}"

started=$SECONDS
"$PYTEST" -n "$PROCESSES" --dist loadfile -m "not machine" "$@"
first=$?
echo "test.sh: part 1 (in $PROCESSES processes) took $((SECONDS - started)) s, exit $first"

started=$SECONDS
"$PYTEST" -p no:xdist -m machine "$@"
second=$?
echo "test.sh: part 2 (machine-wide faults, alone) took $((SECONDS - started)) s, exit $second"

if [ "$first" -eq 5 ] && [ "$second" -eq 5 ]; then
    exit 5
fi
for rc in "$first" "$second"; do
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then
        exit "$rc"
    fi
done
exit 0
