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
# Parser fuzzing (scripts/fuzz.sh): the seeds through the debug build, then each format for a
# bounded time under libFuzzer with AddressSanitizer (its own build in .build-fuzz).
scripts/fuzz.sh --replay
scripts/fuzz.sh "${WGPM_FUZZ_SECONDS:-30}" manifest manifest-unchecked config lock saved-plan inventory lock-plan inventory-plan
# Crash loop (bench/crashloop.sh): random SIGKILLs during a multi-file apply, then converge.
# One file is segmented; its map is saved every second, so a kill costs up to a second of all
# its connections' bytes (16 MB here, all of it when killed in the first second): the re-fetch
# bound allows for that.
bench/crashloop.sh --kills 8 --files 8 --min-mib 8 --max-mib 14 --big-mib 72 --bandwidth-kb 16384 --max-ratio 2.0
# The render-farm recipe (deploy/nginx) in front of the fake Hub, three installs through it
# (scripts/farm-test.sh, ~5 s; skipped with a message when nginx cannot be installed).
scripts/farm-test.sh
scripts/olah-test.sh   # the olah alternative, the same three installs (~15 s; olah from PyPI once, else skipped)
python3 tools/wan2gp_trace/test_bisect.py   # the history walk that made the bundled knowledge (~1 s)
swift test --skip-build
