#!/usr/bin/env bash
# Crash loop: SIGKILL wgpm apply/worker at random moments during a multi-file download, start it
# again each time, then converge; checks that no final path ever holds wrong bytes, that nothing
# is left behind and how much was fetched again. Usage:
#   bench/crashloop.sh [--release] [--kills N] [--seed S] [--files N] [--min-mib N] [--max-mib N]
#                      [--bandwidth-kb N] [--max-delay S] [--worker-share P] [--max-ratio R] [--keep]
set -euo pipefail
cd "$(dirname "$0")/.."
CONF=debug
ARGS=()
for a in "$@"; do
  if [ "$a" = "--release" ]; then CONF=release; else ARGS+=("$a"); fi
done
scripts/setup.sh
swift build -c "$CONF" --product wgpm 2>&1 | grep -E "error|warning: " || true
WGPM=$(swift build -c "$CONF" --show-bin-path)/wgpm
exec python3 bench/crashloop.py --wgpm "$WGPM" "${ARGS[@]}"
