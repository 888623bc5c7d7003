#!/usr/bin/env sh
# `npm test`: the type-check (tsc, one thread) runs beside `vitest run` (two forks that leave a core
# idle while their tests wait on servers and child processes) instead of before it. tsc runs at a
# lower priority (nice 10), so it takes the cycles the tests leave idle rather than a core a test's
# programs are waiting for: it is off the run's critical path. Both run to their end; tsc's report
# is printed after vitest's so neither's output is mixed into the other's, and the exit code is
# non-zero when either failed. Arguments go to vitest.
typecheck_log=$(mktemp)
nice -n 10 npx tsc -p tsconfig.json --noEmit >"$typecheck_log" 2>&1 &
typecheck_pid=$!
npx vitest run "$@"
tests=$?
wait "$typecheck_pid"
typecheck=$?
if [ "$typecheck" -ne 0 ]; then
  echo "typecheck failed (tsc -p tsconfig.json --noEmit):"
  cat "$typecheck_log"
else
  echo "typecheck passed"
fi
rm -f "$typecheck_log"
[ "$tests" -eq 0 ] && [ "$typecheck" -eq 0 ]
