#!/usr/bin/env bash
# Prints the folder that holds a Node 24 `node`, for running the tests on Node 24
# as well as on the machine's node (scripts/test.sh does):
#
#   PATH="$(bash scripts/ensure-node24.sh):$PATH" npx mocha test/e2e/cli.test.ts
#
# Node 24 comes from the npm registry (the `node` package, which fetches the
# binary for this platform) into .cache/node24/ (gitignored), only when it is not
# there yet. It is installed into a folder of its own and moved into place when
# complete, so an interrupted or concurrent install never leaves a broken one.
# Progress goes to stderr; stdout is the folder alone.
set -euo pipefail
cd "$(dirname "$0")/.."

dest=.cache/node24
bin_of() { echo "$PWD/$1/node_modules/node/bin"; }
is_node24() { [ -x "$1/node" ] && [[ "$("$1/node" --version 2>/dev/null)" == v24.* ]]; }

if ! is_node24 "$(bin_of "$dest")"; then
  mkdir -p .cache
  tmp="$(mktemp -d .cache/node24.partial.XXXXXX)"
  trap 'rm -rf "$tmp"' EXIT
  echo "ensure-node24: installing Node 24 from the npm registry into $dest" >&2
  # The folder's own package.json: the `node` package's preinstall script fetches the binary, and
  # npm 11 runs a dependency's install scripts only when allowScripts names it.
  printf '{ "private": true, "description": "Node 24 for the tests (scripts/ensure-node24.sh)", "allowScripts": { "node": true } }\n' >"$tmp/package.json"
  npm install --prefix "$tmp" --no-package-lock --no-audit --no-fund node@24 >&2
  if ! is_node24 "$(bin_of "$tmp")"; then
    echo "ensure-node24: the install did not produce a working Node 24 at $tmp/node_modules/node/bin/node" >&2
    exit 1
  fi
  # Another run may have finished first; keep whichever works.
  if ! is_node24 "$(bin_of "$dest")"; then
    rm -rf "$dest"
    mv "$tmp" "$dest"
  fi
fi
bin_of "$dest"
