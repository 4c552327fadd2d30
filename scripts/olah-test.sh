#!/usr/bin/env bash
# The olah alternative of docs/farm.md, tested: olah (from PyPI, in .build/olah-venv) in front of
# the project's fake Hub on loopback, three wgpm installs (own state folders and ckpts/) through
# HF_ENDPOINT=olah, and checks that
#   - each LFS file's bytes crossed from upstream once (counted at the fake Hub's file host), but
#     for the one olah block that was in flight when a download was interrupted: olah caches
#     whole blocks (cache-block-size) and drops a block it had not finished when its client went
#     away, so that block crosses again on the resume (the bound is size + one block);
#   - an interrupted download (wgpm killed mid-file) resumes through olah with a 206 and the
#     right sha256, and upstream sends only the blocks from the one the resume starts in;
#   - gated content is refused without a token (olah passes the Hub's 401 GatedRepo on, also once
#     the bytes are in its cache), and with a token that lacks access;
#   - every placed file has the right sha256;
# and two limitations of olah that docs/farm.md states, so that a release that changes them shows:
#   - a cached block with wrong bytes is served again, also for `Cache-Control: no-cache`;
#   - its cache is per commit: when a repo's main moves, an unchanged file crosses again.
# Installs olah with pip into a venv (python3-venv from apt-get when missing); when it cannot, says
# so and exits 0 (skipped). OLAH_VERSION picks the release (default: the one this was checked with).
# Usage: scripts/olah-test.sh [--keep]   (--keep leaves the scratch folder for a look)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/farm-lib.sh
repo=$(pwd)
keep=0; [ "${1:-}" = "--keep" ] && keep=1
OLAH_VERSION=${OLAH_VERSION:-0.5.4}
VENV=$repo/.build/olah-venv
BLOCK=$((8 << 20))   # olah's cache-block-size here (its default is 64 MiB); a multiple of its 1 MiB chunk

skip() { echo "olah-test: skipped: $*"; exit 0; }
olah_ok() { [ -x "$VENV/bin/olah-cli" ] && [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("olah"))' 2>/dev/null)" = "$OLAH_VERSION" ]; }
if ! olah_ok; then
  command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    echo "olah-test: installing python3-venv"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null; } 2>/dev/null \
      || skip "python3 has no venv module and apt-get could not install python3-venv (no root or no package mirror)"
  fi
  echo "olah-test: installing olah $OLAH_VERSION from PyPI into .build/olah-venv (once; a minute or two)"
  rm -rf "$VENV"; mkdir -p "$repo/.build"
  python3 -m venv "$VENV" >/dev/null 2>&1 || { rm -rf "$VENV"; skip "python3 -m venv failed"; }
  if ! "$VENV/bin/pip" install -q --disable-pip-version-check "olah==$OLAH_VERSION" >"$repo/.build/olah-pip.log" 2>&1; then
    tail -3 "$repo/.build/olah-pip.log" >&2; rm -rf "$VENV"
    skip "pip could not install olah==$OLAH_VERSION (no PyPI access?)"
  fi
  olah_ok || { rm -rf "$VENV"; skip "olah installed but olah-cli $OLAH_VERSION is not there"; }
fi

[ -x .build/debug/wgpm ] || swift build --product wgpm >/dev/null
WGPM=$repo/.build/debug/wgpm

T=$(mktemp -d /tmp/wgpm-olah.XXXXXX)
hub_pid=""; olah_pid=""; wgpm_pid=""
cleanup() {
  for pid in $wgpm_pid $olah_pid $hub_pid; do kill "$pid" 2>/dev/null || true; done
  for pid in $wgpm_pid $olah_pid $hub_pid; do wait "$pid" 2>/dev/null || true; done
  if [ "$keep" = 1 ]; then echo "olah-test: kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
fail() { echo "olah-test: FAIL: $*" >&2; [ -f "$T/olah/olah.out" ] && tail -5 "$T/olah/olah.out" >&2; exit 1; }

# -- the fake Hub: a public repo and a gated one (scripts/farm-lib.sh, as in farm-test.sh) -------------
farm_hub_files
hub_config() {  # hub_config RATE [FAULTS]: tokens, the gated repo, a per-connection pace of the file host (0: none), faults
  python3 - "$T/hub/_config.json" "$1" "${2:-[]}" <<'PY'
import json, os, sys
cfg = {"tokens": ["hf_farm", "hf_other"], "repos": {"farm/gated": {"gated": "manual", "granted": ["hf_farm"]}},
       "faults": json.loads(sys.argv[3])}
if int(sys.argv[2]) > 0:
    cfg["cdn_rate_per_connection"] = int(sys.argv[2])
json.dump(cfg, open(sys.argv[1] + ".tmp", "w")); os.rename(sys.argv[1] + ".tmp", sys.argv[1])
PY
}
hub_config 0
python3 tools/fakehub/fakehub.py --root "$T/hub" --log "$T/hub.jsonl" --ready-file "$T/hub.ready" \
  --cdn-host 127.0.0.1 --lifetime 600 >/dev/null 2>"$T/hub.err" &
hub_pid=$!
for _ in $(seq 100); do [ -f "$T/hub.ready" ] && break; sleep 0.05; done
[ -f "$T/hub.ready" ] || fail "the fake Hub did not start"
read -r HUB CDN < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["hub"], d["cdn"])' "$T/hub.ready")

# -- olah, pointed at the fake Hub -----------------------------------------------------------------
OLAH_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$T/olah"
cat > "$T/olah/olah.toml" <<TOML
[basic]
host = "127.0.0.1"
port = $OLAH_PORT
repos-path = "$T/olah/repos"
cache-block-size = "$((BLOCK >> 20))MB"
hf-scheme = "http"
hf-netloc = "${HUB#http://}"
hf-lfs-netloc = "${CDN#http://}"
mirror-scheme = "http"
mirror-netloc = "127.0.0.1:$OLAH_PORT"
mirror-lfs-netloc = "127.0.0.1:$OLAH_PORT"

[accessibility]
offline = false
TOML
(cd "$T/olah" && exec env -u HF_TOKEN "$VENV/bin/olah-cli" -c olah.toml --log-path "$T/olah/logs" >"$T/olah/olah.out" 2>&1) &
olah_pid=$!
OLAH=http://127.0.0.1:$OLAH_PORT
# Ready when it answers HTTP at all (a 404 here; its index page "/" is a 500 in 0.5.4, a template bug).
for _ in $(seq 300); do
  curl -s -o /dev/null "$OLAH/olah-test-ready" && break
  kill -0 "$olah_pid" 2>/dev/null || fail "olah exited at start"
  sleep 0.1
done
curl -s -o /dev/null "$OLAH/olah-test-ready" || fail "olah did not answer in 30 s"

# -- three render machines -------------------------------------------------------------------------
manifest_big='version: 1
files:
  - url: https://huggingface.co/farm/models/resolve/main/big.safetensors
    path: ckpts/farm/big.safetensors
'
manifest="$manifest_big"'  - url: https://huggingface.co/farm/models/resolve/main/vae.safetensors
    path: ckpts/farm/vae.safetensors
  - url: https://huggingface.co/farm/models/resolve/main/tokenizer/tokenizer.json
    path: ckpts/farm/tokenizer/tokenizer.json
  - url: https://huggingface.co/farm/gated/resolve/main/gated.safetensors
    path: ckpts/farm/gated.safetensors
  - url: https://huggingface.co/farm/gated/resolve/main/config.json
    path: ckpts/farm/gated-config.json
'
for m in a b c; do
  mkdir -p "$T/$m"
  printf '%s' "$manifest" > "$T/$m/wgpm.yaml"
  printf 'wan2gp_directory: %s\nckpts_directory: ckpts\nloras_directory: loras\nstate_directory: state\n' "$repo/fixtures/wan2gp" > "$T/$m/config.yaml"
done
machine() {  # machine NAME TOKEN ARGS…
  local name=$1 token=$2; shift 2
  (cd "$T/$name" && exec env -u HF_TOKEN -u WGPM_CONFIG HOME="$T/$name" NO_COLOR=1 HF_ENDPOINT="$OLAH" ${token:+HF_TOKEN=$token} "$WGPM" "$@")
}
upstream_ranges() {  # the Range headers olah sent the file host for one sha256, from log line $2 on
  python3 - "$T/hub.jsonl" "$1" "${2:-0}" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()[int(sys.argv[3]):]
print(" ".join(e["range"] or "-" for e in map(json.loads, lines) if e["listener"] == "cdn" and e["method"] == "GET" and sys.argv[2] in e["path"]))
PY
}
small_bytes() {  # bytes the fake Hub sent for a small (non-LFS) file, served under /api/resolve-cache/
  python3 - "$T/hub.jsonl" "$1" "$2" <<'PY'
import json, sys, urllib.parse
print(sum(e["bytes"] for e in map(json.loads, open(sys.argv[1])) if e["listener"] == "hub" and e["method"] == "GET"
          and e["path"].startswith("/api/resolve-cache/models/" + sys.argv[2] + "/")
          and urllib.parse.unquote(e["path"].split("?")[0]).endswith("/" + sys.argv[3])))
PY
}
big_sha=$(sha "$T/hub/farm/models/big.safetensors"); big_size=$(stat -c %s "$T/hub/farm/models/big.safetensors")
part="$T/a/ckpts/.wgpm-partial/$big_sha-$big_size.part"
start=$(date +%s.%N)

# Machine a is stopped (SIGKILL) in the middle of big: the file host is paced for that run only,
# so that the kill lands mid-file, and a's first manifest holds big alone.
printf '%s' "$manifest_big" > "$T/a/wgpm.yaml"
hub_config 40000000
(cd "$T/a" && exec env -u HF_TOKEN -u WGPM_CONFIG HOME="$T/a" NO_COLOR=1 HF_ENDPOINT="$OLAH" HF_TOKEN=hf_farm "$WGPM" apply --yes) >"$T/a/apply-1.out" 2>&1 &
wgpm_pid=$!
want=$((20 << 20))
for _ in $(seq 600); do
  [ -f "$part" ] && [ "$(stat -c %s "$part")" -ge "$want" ] && break
  kill -0 "$wgpm_pid" 2>/dev/null || break
  sleep 0.02
done
kill -KILL "$wgpm_pid" 2>/dev/null || true; wait "$wgpm_pid" 2>/dev/null || true; wgpm_pid=""
[ -f "$part" ] || { cat "$T/a/apply-1.out" >&2; fail "machine a left no partial of big (did it finish before the kill, or fail?)"; }
kept=$(stat -c %s "$part")
[ "$kept" -ge "$want" ] && [ "$kept" -lt "$big_size" ] || fail "machine a's partial holds $kept bytes; the kill should have landed between $want and $big_size"
sleep 0.5   # olah notices the closed connection and drops the block it was fetching
hub_config 0
before_rerun=$(upstream_bytes "$big_sha"); log_mark=$(wc -l < "$T/hub.jsonl")

printf '%s' "$manifest" > "$T/a/wgpm.yaml"
machine a hf_farm lock >"$T/a/lock.out" 2>&1 || { cat "$T/a/lock.out" >&2; fail "wgpm lock through olah failed"; }
cp "$T/a/wgpm.lock" "$T/b/"; cp "$T/a/wgpm.lock" "$T/c/"
machine a hf_farm apply --yes >"$T/a/apply.out" 2>&1 || { cat "$T/a/apply.out" >&2; fail "machine a: apply (the resume) failed"; }
[ "$(sha "$T/a/ckpts/farm/big.safetensors")" = "$big_sha" ] || fail "machine a: big has the wrong sha256 after the resume"
# The resume went through olah as a Range request that olah answered 206 (uvicorn's access log).
grep -q "\"GET /farm/models/resolve/[0-9a-f]*/big.safetensors HTTP/1.1\" 206" "$T/olah/olah.out" \
  || fail "olah answered no 206 for big: $(grep 'big.safetensors HTTP' "$T/olah/olah.out" | tail -3)"
# Upstream sent only whole blocks from the one the resume started in (or a later one, when olah
# had already finished that block), never the bytes machine a kept.
rerun=$(( $(upstream_bytes "$big_sha") - before_rerun ))
first_block=$(( kept / BLOCK * BLOCK ))
[ "$rerun" -le $((big_size - first_block)) ] && [ $(( (big_size - rerun) % BLOCK )) -eq 0 ] \
  || fail "the resume from byte $kept fetched $rerun bytes of big upstream; at most the blocks from byte $first_block ($((big_size - first_block))) should cross"
rerun_ranges=$(upstream_ranges "$big_sha" "$log_mark")
case "$rerun_ranges" in "bytes=$((big_size - rerun))-"*) ;; *) fail "the resume's upstream ranges do not start at a block: $rerun_ranges";; esac

machine b hf_farm apply --yes >"$T/b/apply.out" 2>&1 || { cat "$T/b/apply.out" >&2; fail "machine b: apply failed"; }
# Machine c has no token: everything but the gated repo's files.
if machine c "" apply --yes >"$T/c/apply.out" 2>&1; then fail "machine c placed gated files without a token"; fi
grep -q "gated" "$T/c/apply.out" || { cat "$T/c/apply.out" >&2; fail "machine c: no clear message about the gated repo"; }
[ ! -e "$T/c/ckpts/farm/gated.safetensors" ] || fail "machine c holds the gated file"
elapsed=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")

# Bytes upstream: each LFS file once, big once plus what olah threw away of the block in flight at
# the kill (it keeps only finished blocks), which is less than one block.
total_big=$(upstream_bytes "$big_sha"); lost=$((total_big - big_size))
[ "$lost" -ge 0 ] && [ "$lost" -le "$BLOCK" ] || fail "big.safetensors: $total_big bytes crossed upstream for a $big_size-byte file; the bound is size + one block ($((big_size + BLOCK)))"
for f in models/vae gated/gated; do
  s=$(sha "$T/hub/farm/$f.safetensors"); n=$(stat -c %s "$T/hub/farm/$f.safetensors")
  got=$(upstream_bytes "$s"); [ "$got" -eq "$n" ] || fail "$f.safetensors: $got bytes crossed upstream for a $n-byte file over three machines"
done
# The small files came from the Hub once as well: olah caches them too (nginx's recipe does not).
for f in models:tokenizer/tokenizer.json gated:config.json; do
  r=farm/${f%%:*} rel=${f#*:}; n=$(stat -c %s "$T/hub/$r/$rel")
  got=$(small_bytes "$r" "$rel"); [ "$got" -eq "$n" ] || fail "$r/$rel: $got bytes came from the Hub for a $n-byte file over three machines"
done

# Gated content without a token: olah passes the Hub's 401 on, though the bytes are in its cache
# (it asks the Hub about every /resolve/, HEAD and GET alike) ...
g=$(sha "$T/hub/farm/gated/gated.safetensors")
for method in GET HEAD; do
  opt=(-o /dev/null -D -); [ "$method" = HEAD ] && opt=(-I)
  hdr=$(curl -s "${opt[@]}" "$OLAH/farm/gated/resolve/main/gated.safetensors" | tr -d '\r')
  code=$(printf '%s\n' "$hdr" | awk 'NR==1{print $2}')
  [ "$code" = 401 ] || fail "$method /resolve/ of a cached gated file without a token answered $code"
  printf '%s\n' "$hdr" | grep -qi '^x-error-code: GatedRepo' || fail "olah's 401 for the gated file lacks X-Error-Code: GatedRepo"
done
# ... also at the pinned commit, as a lock asks ...
commit=$(curl -s "$HUB/api/models/farm/gated" | python3 -c 'import json,sys; print(json.load(sys.stdin)["sha"])')
grep -q "$commit" "$T/a/wgpm.lock" || fail "the lock does not pin the gated repo at $commit"
code=$(curl -s -o /dev/null -w '%{http_code}' "$OLAH/farm/gated/resolve/$commit/gated.safetensors")
[ "$code" = 401 ] || fail "/resolve/$commit/ of the gated file without a token answered $code"
# ... and with a valid token that has no access to the repo: the Hub's 403.
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer hf_other" "$OLAH/farm/gated/resolve/main/gated.safetensors")
[ "$code" = 403 ] || fail "the gated file with a token lacking access answered $code"

# Every placed file has the right bytes.
for m in a b c; do
  for rel in farm/models/big.safetensors farm/models/vae.safetensors farm/models/tokenizer/tokenizer.json farm/gated/gated.safetensors farm/gated/config.json; do
    name=$(basename "$rel"); [ "$rel" = farm/gated/config.json ] && name=gated-config.json
    dest="$T/$m/ckpts/farm/$name"; [ "$name" = tokenizer.json ] && dest="$T/$m/ckpts/farm/tokenizer/tokenizer.json"
    if [ "$m" = c ] && [[ $rel == farm/gated/* ]]; then continue; fi
    [ -f "$dest" ] || fail "machine $m: $dest is missing"
    [ "$(sha "$dest")" = "$(sha "$T/hub/$rel")" ] || fail "machine $m: $dest has the wrong sha256"
  done
done
grep -rqs "hf_farm" "$T/olah/repos" && fail "a token is in olah's cache"
total=$(python3 -c 'import json,sys; print(sum(e["bytes"] for e in map(json.loads, open(sys.argv[1])) if e["listener"]=="cdn" and e["method"]=="GET"))' "$T/hub.jsonl")

# What olah does not do (asserted, so that a release that changes it shows up here): a block it
# cached with wrong bytes stays. It does not check an LFS file's sha256 when it fills its cache,
# and `Cache-Control: no-cache` (which wgpm sends on its retry after a hash mismatch) does not
# make it fetch again. With nginx that retry heals the entry; with olah the entry must be deleted
# under repos-path (files/models/<org>/<repo>/resolve/<commit>/<path>).
mkdir -p "$T/hub/farm/heal"; head -c $((1 << 20)) /dev/urandom > "$T/hub/farm/heal/heal.safetensors"
h=$(sha "$T/hub/farm/heal/heal.safetensors")
hub_config 0 '[{"listener": "cdn", "type": "wrong_bytes", "path_contains": "/lfs/", "count": 1}]'
curl -s -o "$T/heal.1" "$OLAH/farm/heal/resolve/main/heal.safetensors"
curl -s -o "$T/heal.2" -H "Cache-Control: no-cache" -H "Pragma: no-cache" "$OLAH/farm/heal/resolve/main/heal.safetensors"
hub_config 0
[ "$(sha "$T/heal.1")" != "$h" ] || fail "the wrong_bytes fault did not reach olah"
heal_gets=$(python3 -c 'import json,sys; print(sum(1 for e in map(json.loads, open(sys.argv[1])) if e["listener"]=="cdn" and e["method"]=="GET" and sys.argv[2] in e["path"]))' "$T/hub.jsonl" "$h")
if [ "$(sha "$T/heal.2")" = "$h" ] || [ "$heal_gets" -ne 1 ]; then
  fail "olah now heals a bad cached block (no-cache answer right: $([ "$(sha "$T/heal.2")" = "$h" ] && echo yes || echo no), upstream GETs: $heal_gets): update docs/farm.md's olah section, then this check"
fi
# Nor does it share a file between commits: its cache is keyed by repo, commit and path. When a
# repo's main moves (here: one file added), an unchanged file is fetched from upstream again.
vae=$(sha "$T/hub/farm/models/vae.safetensors"); vae_before=$(upstream_bytes "$vae")
echo moved > "$T/hub/farm/models/moved.txt"
curl -s -o "$T/vae.new" "$OLAH/farm/models/resolve/main/vae.safetensors"
[ "$(sha "$T/vae.new")" = "$vae" ] || fail "vae.safetensors at the new commit has the wrong sha256"
vae_again=$(( $(upstream_bytes "$vae") - vae_before ))
[ "$vae_again" -eq "$(stat -c %s "$T/hub/farm/models/vae.safetensors")" ] \
  || fail "vae.safetensors at a new commit of its repo crossed upstream $vae_again bytes; olah 0.5.4 fetches it again whole (update docs/farm.md if it no longer does)"

echo "olah-test: big ($big_size bytes): killed at $kept bytes; the resume fetched $rerun bytes upstream ($rerun_ranges); $total_big in all, $lost of them the block olah dropped at the kill"
echo "olah-test: ok: olah $OLAH_VERSION, 3 machines in ${elapsed} s; the file host sent $total bytes upstream (vae and gated once, big once + $lost); resume answered 206; gated refused without a token (401 GatedRepo) and with a token lacking access (403); a bad cached block is not fetched again for no-cache; a new commit fetches unchanged files again ($vae_again bytes of vae)"
