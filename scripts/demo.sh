#!/usr/bin/env bash
# The main job end to end on a fresh machine: build wgpm, start a local fake Hub that serves
# small generated files for the example manifest's models, plan, apply, and plan again.
# Nothing outside demo-work/ is touched; no network beyond 127.0.0.1 is used.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MANIFEST=${1:-manifests/studio-mix.yaml}
scripts/setup.sh
echo "demo: building wgpm (a few minutes the first time: about 2 on 2 idle cores; swift's progress follows)"
# The build's own progress lines, so the first run is not a silent minute and a half.
swift build 2>&1 | grep --line-buffered -E "^\[[0-9]+/[0-9]+\] (Compiling|Linking)|error|warning: " \
  | awk '/error|warning: / { print; next } { n++; if (n % 40 == 1) print "  " $0 }' || true
WGPM=$(swift build --show-bin-path)/wgpm

WORK=$ROOT/demo-work
rm -rf "$WORK"
mkdir -p "$WORK/hub" "$WORK/wan2gp-data"
cat > "$WORK/config.yaml" <<YAML
wan2gp_directory: $ROOT/fixtures/wan2gp
ckpts_directory: $WORK/wan2gp-data/ckpts
loras_directory: $WORK/wan2gp-data/loras
state_directory: $WORK/state
YAML
export WGPM_CONFIG=$WORK/config.yaml

echo "demo: generating small synthetic Hub repos for the models of $MANIFEST"
for id in t2v i2v_2_2 vace_14B vace_14B_cocktail ti2v_2_2; do
  "$WGPM" show "$id" --all-variants --json
done | python3 tools/fakehub/generate.py --root "$WORK/hub" --max-kib 256
python3 tools/fakehub/generate.py --root "$WORK/hub" --max-kib 256 "$MANIFEST"

python3 tools/fakehub/fakehub.py --root "$WORK/hub" --log "$WORK/hub-requests.jsonl" \
  --ready-file "$WORK/hub.json" --lifetime 900 >/dev/null &
HUB_PID=$!
trap 'kill $HUB_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$WORK/hub.json" ] && break; sleep 0.1; done
export HF_ENDPOINT=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['hub'])" "$WORK/hub.json")
echo "demo: fake Hub at $HF_ENDPOINT (file host on localhost)"

echo
echo "\$ wgpm plan -m $MANIFEST --detailed-exitcode"
set +e
"$WGPM" plan -m "$MANIFEST" --detailed-exitcode
status=$?
set -e
echo "(exit code $status: 2 means changes are pending)"
echo
echo "\$ wgpm plan -m $MANIFEST --json -o $WORK/plan.json > $WORK/plan-stdout.json   # saved plan; cached metadata"
"$WGPM" plan -m "$MANIFEST" -o "$WORK/plan.json" --json > "$WORK/plan-stdout.json"
echo "\$ python3 … $WORK/plan-stdout.json   # what the JSON says"
python3 - "$WORK/plan-stdout.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
s = p["summary"]
def human(n):
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 999.95 or unit == "TB":
            return "%d B" % n if unit == "B" else "%.1f %s" % (n, unit)
        n /= 1000.0
print("  format_version %d: %d actions, %s to download, %d Hub requests this time"
      % (p["format_version"], len(p["actions"]), human(s["download_bytes"]), p["stats"]["hub_requests"]))
PY
[ "$status" -eq 2 ] || { echo "demo: expected pending changes (exit 2), got $status" >&2; exit 1; }

echo
echo "\$ wgpm apply $WORK/plan.json 2>&1   # the saved plan alone, applied only while it still matches"
"$WGPM" apply "$WORK/plan.json" 2>&1
echo
echo "\$ wgpm plan -m $MANIFEST --detailed-exitcode"
"$WGPM" plan -m "$MANIFEST" --detailed-exitcode
echo "(exit code 0: no changes)"
echo
echo "\$ wgpm queue status | tail -3"
"$WGPM" queue status | tail -3
python3 - "$WORK/hub-requests.jsonl" <<'PY'
import json, sys
log = [json.loads(l) for l in open(sys.argv[1])]
cdn = [r for r in log if r["listener"] == "cdn"]
print("fake Hub saw %d requests; %d to the file host, %d of them with a token" % (len(log), len(cdn), sum(r["auth"] for r in cdn)))
PY
kill $HUB_PID 2>/dev/null || true
cat <<EOF
demo: done. The work folder is $WORK. To keep exploring with the same machine:
  rm -f $WORK/hub.json; python3 $ROOT/tools/fakehub/fakehub.py --root $WORK/hub --ready-file $WORK/hub.json & sleep 1
  export WGPM_CONFIG=$WORK/config.yaml
  export HF_ENDPOINT=\$(python3 -c "import json; print(json.load(open('$WORK/hub.json'))['hub'])")
  $WGPM plan -m $(cd "$ROOT" && realpath "$MANIFEST")        # then edit the manifest, 'wgpm show t2v', 'wgpm queue status' …
EOF
