# Shared by scripts/farm-test.sh and scripts/olah-test.sh (sourced, not run): the fake Hub's
# farm repos and the measures both tests take of it. Needs $T (the scratch folder).

# The fake Hub's repos under $T/hub: a public one (a 48 MiB file, a 3 MiB file and a small
# tokenizer) and a gated one (a 2 MiB file and a small config).
farm_hub_files() {
  python3 - "$T/hub" <<'PY'
import json, os, random, struct, sys
root = sys.argv[1]
def safetensors(n, seed):
    header = json.dumps({"t": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + random.Random(seed).randbytes(n)
files = {"farm/models/big.safetensors": safetensors(48 << 20, 1), "farm/models/vae.safetensors": safetensors(3 << 20, 2),
         "farm/models/tokenizer/tokenizer.json": json.dumps({"model": "farm", "vocab": list(range(2000))}).encode(),
         "farm/gated/gated.safetensors": safetensors(2 << 20, 3), "farm/gated/config.json": b'{"gated": true}\n'}
for rel, data in files.items():
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").write(data)
PY
}

# Bytes the fake Hub's file host sent for one sha256 (from its request log).
upstream_bytes() {
  python3 - "$T/hub.jsonl" "$1" <<'PY'
import json, sys
print(sum(e["bytes"] for e in map(json.loads, open(sys.argv[1])) if e["listener"] == "cdn" and e["method"] == "GET" and sys.argv[2] in e["path"]))
PY
}

sha() { sha256sum "$1" | cut -d' ' -f1; }
