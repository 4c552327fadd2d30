#!/usr/bin/env bash
# Runs every test: installs system packages if missing, builds, and runs `swift test`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build --build-tests 2>&1 | tee .build-test-output.log | grep -E "warning:|error:" || true
if grep -E "^/.*(warning|error):" .build-test-output.log | grep -v "/.build/checkouts/" >/dev/null; then
  echo "test: the build has warnings or errors in wgpm's own code (see above)" >&2
  rm -f .build-test-output.log
  exit 1
fi
rm -f .build-test-output.log
swift test --skip-build
