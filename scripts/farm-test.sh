#!/usr/bin/env bash
# The render-farm recipe, tested: deploy/nginx/wgpm-farm.conf in front of the project's fake Hub on
# loopback, three wgpm installs (own state folders and ckpts/) through it, and checks that
#   - each file's bytes crossed from upstream once (counted at the fake Hub's file host),
#   - a partial download resumes through the proxy (206), fetching only the missing slices,
#   - gated content is refused without a token (at /resolve/, and a forged signed URL at the
#     file server even though the bytes are cached),
#   - paths-info (POST) is answered from the cache, keyed by its body,
#   - every placed file has the right sha256.
# Installs nginx (apt-get) when missing; when it cannot, says so and exits 0 (skipped).
# Usage: scripts/farm-test.sh [--keep]   (--keep leaves the scratch folder for a look)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/farm-lib.sh
repo=$(pwd)
keep=0; [ "${1:-}" = "--keep" ] && keep=1

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  echo "farm-test: installing nginx-light"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx-light >/dev/null; } 2>/dev/null; then
    echo "farm-test: skipped: nginx is not installed and apt-get could not install it (no root or no package mirror)"
    exit 0
  fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
for module in slice auth_request; do
  if ! "$NGINX" -V 2>&1 | grep -q "http_${module}_module"; then
    echo "farm-test: skipped: this nginx lacks the $module module (install nginx-light or nginx from Debian)"
    exit 0
  fi
done

[ -x .build/debug/wgpm ] || swift build --product wgpm >/dev/null
WGPM=$repo/.build/debug/wgpm

T=$(mktemp -d /tmp/wgpm-farm.XXXXXX)
hub_pid=""; nginx_started=0
cleanup() {
  [ "$nginx_started" = 1 ] && "$NGINX" -p "$T/nginx" -c "$T/nginx/nginx.conf" -s stop 2>/dev/null || true
  [ -n "$hub_pid" ] && kill "$hub_pid" 2>/dev/null || true
  if [ "$keep" = 1 ]; then echo "farm-test: kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
fail() { echo "farm-test: FAIL: $*" >&2; [ -f "$T/nginx/error.log" ] && tail -5 "$T/nginx/error.log" >&2; exit 1; }

# -- the fake Hub: a public repo and a gated one ---------------------------------------------------
farm_hub_files
python3 -c 'import json, sys; json.dump({"tokens": ["hf_farm"], "repos": {"farm/gated": {"gated": "manual", "granted": ["hf_farm"]}}}, open(sys.argv[1], "w"))' "$T/hub/_config.json"
python3 tools/fakehub/fakehub.py --root "$T/hub" --log "$T/hub.jsonl" --ready-file "$T/hub.ready" \
  --cdn-host 127.0.0.1 --lifetime 600 >/dev/null &
hub_pid=$!
for _ in $(seq 100); do [ -f "$T/hub.ready" ] && break; sleep 0.05; done
[ -f "$T/hub.ready" ] || fail "the fake Hub did not start"
read -r HUB CDN < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["hub"], d["cdn"])' "$T/hub.ready")
CDN_HOSTPORT=${CDN#http://}

# -- nginx with the recipe, pointed at the fake Hub ------------------------------------------------
read -r PROXY_PORT FILES_PORT < <(python3 -c 'import socket
ss=[socket.socket() for _ in range(2)]
[s.bind(("127.0.0.1",0)) for s in ss]; print(*[s.getsockname()[1] for s in ss])')
mkdir -p "$T/nginx/cache" "$T/nginx/tmp"
sed -e "/farm-test: cache/s|/var/cache/nginx/|$T/nginx/cache/|" \
    -e "/farm-test: hub-listen/s|listen 8080|listen 127.0.0.1:$PROXY_PORT|" \
    -e "/farm-test: files-listen/s|listen 8081|listen 127.0.0.1:$FILES_PORT|" \
    -e "/farm-test: files-url/s|:8081/|:$FILES_PORT/|" \
    -e "/farm-test: hub-upstream/s|https://huggingface.co|$HUB|" \
    -e "/farm-test: hub-self/s|https://huggingface.co/|$HUB/|" \
    -e "/farm-test: hub-host/s|huggingface.co|${HUB#http://}|" \
    -e "/farm-test: resolver/d" \
    -e "s|# farm-test: file-host|\"~^${CDN_HOSTPORT//./\\\\.}\$\" 1;|" \
    deploy/nginx/wgpm-farm.conf > "$T/nginx/wgpm-farm.conf"
cat > "$T/nginx/nginx.conf" <<CONF
daemon on;
user root;
worker_processes 2;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log warn;
events { worker_connections 256; }
http {
    access_log $T/nginx/access.log combined;
    client_body_temp_path $T/nginx/tmp/body;
    proxy_temp_path $T/nginx/tmp/proxy;
    fastcgi_temp_path $T/nginx/tmp/fastcgi;
    uwsgi_temp_path $T/nginx/tmp/uwsgi;
    scgi_temp_path $T/nginx/tmp/scgi;
    log_format farm '\$server_port \$request_method \$uri "\$http_range" \$status \$body_bytes_sent \$upstream_cache_status';
    access_log $T/nginx/farm.log farm;
    include $T/nginx/wgpm-farm.conf;
}
CONF
"$NGINX" -t -p "$T/nginx" -c "$T/nginx/nginx.conf" >/dev/null 2>"$T/nginx/test.log" || { cat "$T/nginx/test.log" >&2; fail "nginx rejected the recipe"; }
"$NGINX" -p "$T/nginx" -c "$T/nginx/nginx.conf" || fail "nginx did not start"
nginx_started=1
PROXY=http://127.0.0.1:$PROXY_PORT

# -- three render machines -------------------------------------------------------------------------
manifest='version: 1
files:
  - url: https://huggingface.co/farm/models/resolve/main/big.safetensors
    path: ckpts/farm/big.safetensors
  - url: https://huggingface.co/farm/models/resolve/main/vae.safetensors
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
  (cd "$T/$name" && env -u HF_TOKEN -u WGPM_CONFIG HOME="$T/$name" NO_COLOR=1 HF_ENDPOINT="$PROXY" ${token:+HF_TOKEN=$token} "$WGPM" "$@")
}
big_sha=$(sha "$T/hub/farm/models/big.safetensors"); big_size=$(stat -c %s "$T/hub/farm/models/big.safetensors")

machine a hf_farm lock >"$T/a/lock.out" 2>&1 || { cat "$T/a/lock.out" >&2; fail "wgpm lock through the proxy failed"; }
cp "$T/a/wgpm.lock" "$T/b/"; cp "$T/a/wgpm.lock" "$T/c/"

# Machine a was stopped mid-download earlier: its partial holds the first 20 MiB of big.
kept=$((20 << 20)); slice=$((16 << 20))
mkdir -p "$T/a/ckpts/.wgpm-partial"
head -c "$kept" "$T/hub/farm/models/big.safetensors" > "$T/a/ckpts/.wgpm-partial/$big_sha-$big_size.part"
start=$(date +%s.%N)
machine a hf_farm apply --yes >"$T/a/apply.out" 2>&1 || { cat "$T/a/apply.out" >&2; fail "machine a: apply failed"; }
grep -q " GET /sha256/$big_sha/.* \"bytes=$kept-\" 206 " "$T/nginx/farm.log" || fail "machine a did not resume big with a 206 through the proxy: $(grep "$big_sha" "$T/nginx/farm.log" | head -3)"
after_a=$(upstream_bytes "$big_sha")
[ "$after_a" -eq $((big_size - kept / slice * slice)) ] || fail "resume fetched $after_a bytes of big upstream; only the missing slices ($((big_size - kept / slice * slice))) should cross"
machine b hf_farm apply --yes >"$T/b/apply.out" 2>&1 || { cat "$T/b/apply.out" >&2; fail "machine b: apply failed"; }
# Machine c has no token: everything but the gated repo's files.
if machine c "" apply --yes >"$T/c/apply.out" 2>&1; then fail "machine c placed gated files without a token"; fi
grep -q "gated" "$T/c/apply.out" || { cat "$T/c/apply.out" >&2; fail "machine c: no clear message about the gated repo"; }
[ ! -e "$T/c/ckpts/farm/gated.safetensors" ] || fail "machine c holds the gated file"
elapsed=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")

# Every file crossed once: the bytes the file host sent per LFS file equal its size.
for f in big vae; do
  s=$(sha "$T/hub/farm/models/$f.safetensors"); n=$(stat -c %s "$T/hub/farm/models/$f.safetensors")
  got=$(upstream_bytes "$s"); [ "$got" -eq "$n" ] || fail "$f.safetensors: $got bytes crossed upstream for a $n-byte file over three machines"
done
g=$(sha "$T/hub/farm/gated/gated.safetensors"); gn=$(stat -c %s "$T/hub/farm/gated/gated.safetensors")
[ "$(upstream_bytes "$g")" -eq "$gn" ] || fail "gated.safetensors crossed upstream $(upstream_bytes "$g") bytes"

# Small files (not LFS) cross once too: the Hub's resolve-cache answers, cached by commit and path.
small_bytes() {  # bytes the fake Hub sent for one small file's resolve-cache GETs
  python3 - "$T/hub.jsonl" "$1" <<'PY'
import json, sys
print(sum(e["bytes"] for e in map(json.loads, open(sys.argv[1]))
          if e["listener"] == "hub" and e["method"] == "GET" and "/api/resolve-cache/" in e["path"] and e["path"].split("?")[0].endswith(sys.argv[2])))
PY
}
tn=$(stat -c %s "$T/hub/farm/models/tokenizer/tokenizer.json"); got=$(small_bytes /tokenizer/tokenizer.json)
[ "$got" -eq "$tn" ] || fail "tokenizer.json: $got bytes crossed upstream for a $tn-byte file over three machines"
checks=$(python3 -c 'import json,sys; print(sum(1 for e in map(json.loads, open(sys.argv[1])) if e["listener"]=="hub" and e["method"]=="HEAD" and "/api/resolve-cache/" in e["path"]))' "$T/hub.jsonl")
[ "$checks" -ge 3 ] || fail "the small files' access was checked upstream $checks times for three machines"
# A cached gated small file: refused without a token, served with one.
gated_small=$(python3 -c 'import json,sys; print(next(e["path"] for e in map(json.loads, open(sys.argv[1])) if e["method"]=="GET" and "/api/resolve-cache/models/farm/gated/" in e["path"]))' "$T/hub.jsonl")
code=$(curl -s -o /dev/null -w '%{http_code}' "$PROXY$gated_small")
[ "$code" = 401 ] || fail "a cached gated small file was served without a token ($code)"
hit=$(curl -s -o /dev/null -D - -H "Authorization: Bearer hf_farm" "$PROXY$gated_small" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-farm-cache"{print $2}')
[ "$hit" = HIT ] || fail "a gated small file with a token did not come from the cache ($hit)"

# Gated content without a token: refused at /resolve/ ...
code=$(curl -s -o /dev/null -w '%{http_code}' "$PROXY/farm/gated/resolve/main/gated.safetensors")
[ "$code" = 401 ] || fail "/resolve/ of a gated file without a token answered $code"
# ... and at the file server, though the bytes are cached: a forged or expired signed URL.
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$FILES_PORT/sha256/$g/http/$CDN_HOSTPORT/lfs/$g?Expires=9999999999&Signature=forged")
[ "$code" = 403 ] || fail "the file server served a cached gated file for a forged signature ($code)"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$FILES_PORT/sha256/$g/http/$CDN_HOSTPORT/lfs/$g")
[ "$code" = 403 ] || fail "the file server served a cached gated file without a signature ($code)"
# An open proxy it is not: other hosts are refused.
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$FILES_PORT/sha256/$g/http/example.com/x")
[ "$code" = 403 ] || fail "the file server fetched from a host that is not the Hub's ($code)"

# paths-info (POST) from the cache, keyed by its body (tokenless requests).
pi() { curl -s -o /dev/null -D - -X POST --data "paths=$1&expand=true" "$PROXY/api/models/farm/models/paths-info/main" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-farm-cache"{print $2}'; }
[ "$(pi vae.safetensors)" = MISS ] && [ "$(pi vae.safetensors)" = HIT ] && [ "$(pi big.safetensors)" = MISS ] \
  || fail "paths-info is not cached by its body"
# With a token, never from the cache (a private repo's listing must not reach other machines).
tok=$(curl -s -o /dev/null -D - -H "Authorization: Bearer hf_farm" -X POST --data "paths=vae.safetensors&expand=true" \
  "$PROXY/api/models/farm/models/paths-info/main" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-farm-cache"{print $2}')
[ "$tok" = BYPASS ] || fail "a request with a token was answered from the cache ($tok)"

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
grep -rq "hf_farm" "$T/nginx/cache" && fail "a token is in the cache"
total=$(python3 -c 'import json,sys; print(sum(e["bytes"] for e in map(json.loads, open(sys.argv[1])) if e["listener"]=="cdn" and e["method"]=="GET"))' "$T/hub.jsonl")
echo "farm-test: ok: 3 machines in ${elapsed} s; the file host sent $total bytes upstream (each LFS file once; big resumed from $kept bytes with 206); small files once, access checked $checks times; gated refused without a token"
