#!/usr/bin/env bash
# Segmented-download benchmark (issue 11): wgpm against curl -o, aria2c -x16 -s16, hf_transfer and
# huggingface_hub, fetching from nginx with a per-connection cap behind a tc-capped veth link to a
# network namespace. Needs root. Options (see bench/segmented_bench.py):
#   [--big-mb 1024] [--set 8x128] [--rounds 3] [--link-mbit 4000] [--conn-mbs 50] [--parallel 2]
#   [--hf-transfer-files 16] [--wgpm-config 'connections_per_file: 16']... [--only big|set]
#   [--clients curl,aria2,hf_transfer,huggingface_hub,wgpm] [--out FILE]
# WGPM_BIN=PATH benchmarks that wgpm binary instead of this checkout's release build (an A/B of
# two builds, or a wrapper that profiles it).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench/segmented.sh: needs root (ip netns, tc)" >&2; exit 2; }
scripts/setup.sh
need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v aria2c >/dev/null || need+=(aria2)
command -v tc >/dev/null || need+=(iproute2)
[ -x /usr/bin/time ] || need+=(time)
python3 -c "import ensurepip" 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
swift build -c release 2>&1 | grep -E "error|warning: " || true
WGPM=${WGPM_BIN:-$(swift build -c release --show-bin-path)/wgpm}
mkdir -p bench-work/segmented
if [ ! -x bench-work/venv/bin/python ]; then
  python3 -m venv bench-work/venv
fi
bench-work/venv/bin/python -c "import huggingface_hub, hf_transfer" 2>/dev/null ||
  bench-work/venv/bin/pip install -q huggingface_hub hf_transfer

# The driver cleans up after itself; this also covers a driver that was killed outright: the
# servers it started (by their pid files, only if the pid is still that program) and the namespace.
cleanup() {
  for f in bench-work/segmented/nginx.pid:nginx bench-work/segmented/fakehub.pid:fakehub.py; do
    pidfile=${f%%:*} prog=${f##*:}
    if [ -f "$pidfile" ]; then
      pid=$(cat "$pidfile")
      if [ -n "$pid" ] && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "$prog"; then
        kill "$pid" 2>/dev/null || true
      fi
      rm -f "$pidfile"
    fi
  done
  ip netns del wgpm-seg 2>/dev/null || true
  ip link del wgpms0 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
bench-work/venv/bin/python bench/segmented_bench.py --wgpm "$WGPM" --python bench-work/venv/bin/python \
  --out bench-work/segmented.md "$@"
