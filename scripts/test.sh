#!/usr/bin/env bash
# The whole test suite: what the README's test command and CI (.ci/run) run.
# Installs the Debian packages the end-to-end suites need where they are
# missing and it can (root with apt-get, as on CI); builds; type-checks src,
# tests and benchmarks; runs every test (the reliability suite in its short form:
# npm run test:reliability runs it in full).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-system-deps.sh buildbot buildbot-worker prometheus chromium nginx wrk
npm run --silent build
npx --no-install tsc --noEmit -p tsconfig.json
npx --no-install mocha --reporter ./test/support/summary-reporter.cjs 'test/unit/**/*.test.ts' 'test/e2e/**/*.test.ts' 'test/reliability/**/*.test.ts' "$@"
