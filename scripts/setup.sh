#!/usr/bin/env bash
# Installs what wgpm needs to build on a fresh Debian machine: the libcurl and SQLite
# development packages (Swift packages resolve from the machine's package copies), and cmark-gfm,
# which the tests use to prove that the Markdown output parses as GitHub-flavoured tables.
set -euo pipefail
need=()
for pkg in libcurl4-openssl-dev libsqlite3-dev cmark-gfm; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
