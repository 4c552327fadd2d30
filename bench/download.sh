#!/usr/bin/env bash
# Download benchmark: wgpm against curl -o and huggingface_hub from PyPI, same local
# server, same files, one run. Usage: bench/download.sh [--big-mb N] [--set COUNTxMB] [--rounds N]
#   [--links 2500,5000,8000,veth]   also across a veth pair to a network namespace, capped at each
#                                   rate in Mbit/s ("veth": uncapped); needs root and iproute2
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [[ " $* " == *" --links "* ]] && ! command -v tc >/dev/null; then
  apt-get install -y -qq iproute2 >/dev/null
fi
swift build -c release 2>&1 | grep -E "error|warning: " || true
WGPM=$(swift build -c release --show-bin-path)/wgpm
mkdir -p bench-work
if [ ! -x bench-work/venv/bin/python ]; then
  python3 -m venv bench-work/venv
  bench-work/venv/bin/pip install -q huggingface_hub
fi
bench-work/venv/bin/python -c "import huggingface_hub; print('huggingface_hub', huggingface_hub.__version__)"
python3 bench/download_bench.py --wgpm "$WGPM" --python bench-work/venv/bin/python --out bench-work/download.md "$@"
