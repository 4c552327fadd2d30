#!/usr/bin/env bash
# Hashing and warm-plan benchmarks. Usage: bench/index.sh [--gb N] [--rounds N]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release 2>&1 | grep -E "error|warning: " || true
WGPM=$(swift build -c release --show-bin-path)/wgpm
mkdir -p bench-work
python3 bench/index_bench.py --wgpm "$WGPM" --out bench-work/index.md "$@"
