#!/usr/bin/env python3
"""Compare a trace with what `wgpm show --json` lists, cell by cell (model x setting).

usage: compare_wgpm.py TRACE WGPM_BINARY CONFIG [--models ID,ID]
prints each differing cell and a count; exit 1 when any differs.
"""
import json
import subprocess
import sys


def main():
    trace_path, wgpm, config = sys.argv[1:4]
    only = sys.argv[5].split(",") if len(sys.argv) > 5 and sys.argv[4] == "--models" else None
    trace = json.load(open(trace_path))
    cells = diffs = 0
    for mid in sorted(trace["models"]):
        if only and mid not in only:
            continue
        model = trace["models"][mid]
        for index, setting in enumerate(trace["settings"]):
            q, t, d = setting.split("-")
            want = {p: f["url"] for p, f in model["files"].items() if "settings" not in f or index in f["settings"]}
            r = subprocess.run([wgpm, "show", mid, "--config", config, "--transformer-quantization", q,
                                "--text-encoder-quantization", t, "--dtype", d, "--json"], capture_output=True, text=True)
            if r.returncode != 0:
                print(f"{mid} [{setting}]: wgpm failed: {r.stderr.strip()[:200]}")
                diffs += 1
                continue
            have = {f["path"]: f["url"] for f in json.loads(r.stdout)["files"] if f.get("wan2gp_downloads", True)}
            cells += 1
            extra = sorted(p for p in have if want.get(p) != have[p])
            missing = sorted(p for p in want if have.get(p) != want[p])
            if extra or missing:
                diffs += 1
                print(f"{mid} [{setting}]: wgpm also lists {extra}; wgpm misses {missing}")
    print(f"{cells} cells compared, {diffs} differ")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
