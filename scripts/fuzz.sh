#!/usr/bin/env bash
# Fuzzes wgpm's input parsers with libFuzzer: manifest, machine config, lock, saved plan and
# recorded inventory. Usage: scripts/fuzz.sh [SECONDS] [FORMAT…]
#                           scripts/fuzz.sh --replay
#   SECONDS  per format (default 60); FORMAT one of: manifest manifest-unchecked config lock
#            saved-plan inventory lock-plan inventory-plan (default: all of them). The last two
#            plan with what the parser returned and render the plan (Sources/wgpm-fuzz/Harness.swift).
#   --replay runs the seeds (the repo's files, fuzz/corpus/, fuzz/findings/) through the normal
#            debug build's wgpm-fuzz instead: no sanitizer build, a few seconds (scripts/test.sh).
# Findings not fixed yet wait in fuzz/findings/open/FORMAT/ (not replayed; see its README.md).
# Builds Sources/wgpm-fuzz with -DWGPM_FUZZ and -sanitize=fuzzer,address in its own scratch path
# (.build-fuzz), seeds each corpus from the repo (manifests/*.yaml, config.yaml.example,
# fuzz/corpus/FORMAT/), and runs each format for SECONDS. A crash, a hang (-timeout) or running out
# of memory (-rss_limit_mb) fails the script; the input is kept under .build-fuzz/findings/FORMAT/
# and the command to reproduce it is printed. The corpus grown by earlier runs is kept in
# .build-fuzz/corpus/ and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
shift || true
ALL=(manifest manifest-unchecked config lock saved-plan inventory lock-plan inventory-plan)
FORMATS=("$@")
[ ${#FORMATS[@]} -gt 0 ] || FORMATS=("${ALL[@]}")
SCRATCH=.build-fuzz
# libFuzzer's own flags; FUZZ_FLAGS adds more (e.g. FUZZ_FLAGS="-jobs=2 -workers=2").
TIMEOUT=${FUZZ_TIMEOUT:-10}
RSS_MB=${FUZZ_RSS_MB:-2048}

seed() {  # seed FORMAT DIR: the repo's own files of that format
  case "$1" in
    manifest|manifest-unchecked) cp manifests/*.yaml "$2"/ ;;
    config) cp config.yaml.example "$2"/config.yaml.example ;;
  esac
}

if [ "$SECS" = "--replay" ]; then
  swift build --product wgpm-fuzz 2>&1 | grep -E "error|warning: " || true
  BIN=$(swift build --show-bin-path)/wgpm-fuzz
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  n=0
  for f in "${ALL[@]}"; do
    mkdir -p "$tmp/$f"
    seed "$f" "$tmp/$f"
    dirs=("$tmp/$f")
    for d in "fuzz/corpus/$f" "fuzz/findings/$f"; do [ -d "$d" ] && dirs+=("$d"); done
    "$BIN" "$f" "${dirs[@]}" >"$tmp/$f.log" || { cat "$tmp/$f.log"; echo "fuzz: replay of $f failed" >&2; exit 1; }
    n=$((n + $(wc -l <"$tmp/$f.log")))
  done
  echo "fuzz: replayed $n seed and finding inputs through every parser without a crash"
  exit 0
fi

scripts/setup.sh
echo "fuzz: building wgpm-fuzz with -sanitize=fuzzer,address in $SCRATCH"
mkdir -p "$SCRATCH"
start=$(date +%s)
BUILD=(swift build --scratch-path "$SCRATCH" --product wgpm-fuzz
       -Xswiftc -sanitize=fuzzer,address -Xswiftc -DWGPM_FUZZ)
if ! "${BUILD[@]}" >"$SCRATCH/build.log" 2>&1; then
  grep -E "error" "$SCRATCH/build.log" | head -30 >&2 || tail -30 "$SCRATCH/build.log" >&2
  echo "fuzz: the fuzzer did not build (full log: $SCRATCH/build.log)" >&2
  exit 1
fi
rm -f "$SCRATCH/build.log"
echo "fuzz: built in $(( $(date +%s) - start )) s"
BIN=$("${BUILD[@]}" --show-bin-path)/wgpm-fuzz

dict() {
  case "$1" in
    manifest|manifest-unchecked|config) echo fuzz/yaml.dict ;;
    *) echo fuzz/json.dict ;;
  esac
}

failed=()
for f in "${FORMATS[@]}"; do
  [[ " ${ALL[*]} " == *" $f "* ]] || { echo "fuzz: unknown format '$f' (one of: ${ALL[*]})" >&2; exit 64; }
  corpus=$SCRATCH/corpus/$f
  findings=$SCRATCH/findings/$f
  mkdir -p "$corpus" "$findings"
  seed "$f" "$corpus"
  seeds=()
  [ -d "fuzz/corpus/$f" ] && seeds=("fuzz/corpus/$f")
  # Inputs found earlier (fuzz/findings/FORMAT/) are run first: a fixed finding stays fixed.
  [ -d "fuzz/findings/$f" ] && seeds+=("fuzz/findings/$f")
  echo "fuzz: $f for ${SECS} s (corpus $corpus, $(ls "$corpus" | wc -l) inputs before seeds)"
  set +e
  # The first directory receives new inputs; the committed seeds are read only.
  WGPM_FUZZ_FORMAT=$f LSAN_OPTIONS="suppressions=$PWD/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}" "$BIN" "$corpus" "${seeds[@]}" \
    -max_total_time="$SECS" -timeout="$TIMEOUT" -rss_limit_mb="$RSS_MB" -max_len=8192 \
    -dict="$(dict "$f")" -artifact_prefix="$findings/" -error_exitcode=77 -timeout_exitcode=78 \
    -print_final_stats=1 ${FUZZ_FLAGS:-} >"$findings/run.log" 2>&1
  status=$?
  set -e
  grep -E "^stat::(number_of_executed_units|peak_rss_mb|new_units_added)" "$findings/run.log" \
    | sed "s/^/fuzz: $f: /" || true
  if [ $status -ne 0 ]; then
    failed+=("$f")
    echo "fuzz: $f FAILED (libFuzzer exit $status); the end of its log:" >&2
    grep -vE "^#[0-9]+" "$findings/run.log" | tail -60 >&2
    for input in "$findings"/crash-* "$findings"/timeout-* "$findings"/oom-* "$findings"/leak-*; do
      [ -e "$input" ] || continue
      echo "fuzz: kept $input; reproduce with:" >&2
      echo "  WGPM_FUZZ_FORMAT=$f LSAN_OPTIONS=suppressions=$PWD/fuzz/lsan.supp $BIN $input" >&2
      echo "  or, without sanitizers: swift build --product wgpm-fuzz && \$(swift build --show-bin-path)/wgpm-fuzz $f $input" >&2
    done
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: findings in: ${failed[*]} (see above; commit the input under fuzz/findings/FORMAT/)" >&2
  exit 1
fi
echo "fuzz: no crash, hang or memory blow-up in ${FORMATS[*]} (${SECS} s each)"
