#!/usr/bin/env bash
# The whole test suite: what the README's test command and CI (.ci/run) run.
# Installs the Debian packages the end-to-end suites need where they are
# missing and it can (root with apt-get, as on CI); builds; type-checks src,
# tests and benchmarks; runs every test (the reliability suite in its short form:
# npm run test:reliability runs it in full) on the machine's node and again on
# Node 24 (fetched from the npm registry into .cache/node24/ when missing; once
# when the machine's node is Node 24). The last line adds up both runs:
# "tests: N passed, N failed, N skipped (Node v20...: ...; Node v24...: ...)".
# Arguments go to mocha in both runs (e.g. npm test -- --grep reload).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-system-deps.sh buildbot buildbot-worker prometheus chromium nginx wrk postgresql haproxy kubectl
npm run --silent build
npx --no-install tsc --noEmit -p tsconfig.json

node_dirs=("$(dirname "$(command -v node)")")
if [[ "$(node --version)" != v24.* ]]; then
  node_dirs+=("$(bash scripts/ensure-node24.sh)")
fi

summaries="$(mktemp -d)"
trap 'rm -rf "$summaries"' EXIT

status=0
total=(0 0 0)
runs=()
for i in "${!node_dirs[@]}"; do
  dir="${node_dirs[$i]}"
  version="$("$dir/node" --version)"
  echo
  echo "=== the test suite on Node $version ($dir/node)"
  # That node first on PATH and running mocha: tsx, mocha's own child process and every
  # node a test starts (process.execPath, fork, `node` by name) are that node too.
  rc=0
  PATH="$dir:$PATH" STRANGLER_TEST_SUMMARY="$summaries/$i" "$dir/node" node_modules/mocha/bin/mocha.js \
    --reporter ./test/support/summary-reporter.cjs 'test/unit/**/*.test.ts' 'test/e2e/**/*.test.ts' 'test/reliability/**/*.test.ts' "$@" || rc=$?
  counts=(0 0 0)
  if [ -s "$summaries/$i" ]; then read -r -a counts <"$summaries/$i"; fi
  note=""
  if [ "$rc" -ne 0 ]; then
    status=1
    # A run that failed without a failed test (it crashed, or never got to run) must not read as "0 failed".
    if [ "${counts[1]}" -eq 0 ]; then counts[1]=1; note=", exit code $rc: counted as 1 failed"; fi
  fi
  for k in 0 1 2; do total[k]=$((total[k] + counts[k])); done
  runs+=("Node $version: ${counts[0]} passed, ${counts[1]} failed, ${counts[2]} skipped$note")
done

summary="$(printf '%s; ' "${runs[@]}")"
echo
echo "tests: ${total[0]} passed, ${total[1]} failed, ${total[2]} skipped (${summary%; })"
exit "$status"
