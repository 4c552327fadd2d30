#!/usr/bin/env python3
"""Hashing and warm-plan benchmarks, as ratios against peers measured in the same run.

1. `wgpm index update` over a folder source of a few GB (page cache warm) against `sha256sum` run
   with one process per core, and Python's hashlib over a process pool of the same size.
2. Warm `wgpm plan`: a hash index of 10,000 source files and a manifest of 300 files that are all
   already correct in ckpts/, after one plan has cached metadata and hashes. It must hash nothing
   and ask the Hub nothing; the time is reported next to `true` (process start) and `ls -R`.

Usage: bench/index_bench.py --wgpm PATH [--gb 4] [--out FILE]
"""
import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from multiprocessing import Pool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(cmd, **kw):
    start = time.monotonic()
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, **kw).stdout
    return time.monotonic() - start, out


def hashlib_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(4 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wgpm", required=True)
    ap.add_argument("--work", default=os.path.join(ROOT, "bench-work", "index"))
    ap.add_argument("--gb", type=float, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out")
    args = ap.parse_args()
    work = args.work
    cores = os.cpu_count() or 2
    src = os.path.join(work, "big")
    os.makedirs(src, exist_ok=True)
    count = 8
    each = int(args.gb * (1 << 30) / count)
    files = []
    for i in range(count):
        p = os.path.join(src, "w%02d.safetensors" % i)
        if not (os.path.exists(p) and os.path.getsize(p) == each):
            block = os.urandom(1 << 20)
            with open(p, "wb") as f:
                for j in range(each // (1 << 20)):
                    f.write(bytes([j & 255, i]) + block[2:])
        files.append(p)
    total = sum(os.path.getsize(p) for p in files)
    for p in files:  # warm the page cache, as the targets assume
        subprocess.run(["cat", p], stdout=subprocess.DEVNULL, check=True)

    def wgpm_update():
        d = os.path.join(work, "wgpm-state")
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        with open(os.path.join(d, "config.yaml"), "w") as f:
            f.write("wan2gp_directory: %s/fixtures/wan2gp\nstate_directory: %s/state\nparallel_hash_workers: %d\n"
                    "sources:\n  - directory: %s\n" % (ROOT, d, cores, src))
        return timed([args.wgpm, "index", "update", "--config", os.path.join(d, "config.yaml")], env=dict(os.environ, CI="1"))[0]

    def sha256sum():
        return timed(["bash", "-c", "printf '%%s\\0' %s | xargs -0 -n1 -P%d sha256sum" % (" ".join(files), cores)])[0]

    def python_hashlib():
        start = time.monotonic()
        with Pool(cores) as pool:
            pool.map(hashlib_file, files)
        return time.monotonic() - start

    rows = []
    results = {}
    for name, fn in [("wgpm index update", wgpm_update), ("sha256sum, %d processes" % cores, sha256sum),
                     ("Python hashlib, %d processes" % cores, python_hashlib)]:
        runs = [fn() for _ in range(args.rounds)]
        results[name] = statistics.median(runs)
        print("%-32s %s" % (name, ", ".join("%.2fs" % r for r in runs)), file=sys.stderr)
    wg = results["wgpm index update"]
    rows.append("| hashing %.1f GB (%d files, page cache) | client | median wall | GB/s | GB/s per core | wgpm speed ÷ this |" % (total / 1e9, count))
    rows.append("|---|---|---|---|---|---|")
    for name, wall in results.items():
        rows.append("| | %s | %.2f s | %.2f | %.2f | %.2f |" % (name, wall, total / wall / 1e9, total / wall / 1e9 / cores, wall / wg))

    # Warm plan: 10,000 indexed source files, 300 correct files in ckpts.
    d = os.path.join(work, "plan")
    hub_root = os.path.join(d, "hub")
    if not os.path.isdir(os.path.join(d, "store")):
        shutil.rmtree(d, ignore_errors=True)
        for i in range(10_000):
            p = os.path.join(d, "store", "d%02d" % (i % 100), "f%05d.bin" % i)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(os.urandom(64) * (1 + i % 7))
        for i in range(300):
            data = hashlib.sha512(b"%d" % i).digest() * 64
            for base in (os.path.join(hub_root, "bench", "many"), os.path.join(d, "ckpts")):
                os.makedirs(base, exist_ok=True)
                with open(os.path.join(base, "m%03d.safetensors" % i), "wb") as f:
                    f.write(data)
    with open(os.path.join(d, "config.yaml"), "w") as f:
        f.write("wan2gp_directory: %s/fixtures/wan2gp\nckpts_directory: %s/ckpts\nloras_directory: %s/loras\n"
                "state_directory: %s/state\nsources:\n  - directory: %s/store\n" % (ROOT, d, d, d, d))
    with open(os.path.join(d, "wgpm.yaml"), "w") as f:
        f.write("version: 1\nfiles:\n")
        for i in range(300):
            f.write("  - url: https://huggingface.co/bench/many/resolve/main/m%03d.safetensors\n    path: ckpts/m%03d.safetensors\n" % (i, i))
    ready = os.path.join(d, "hub.json")
    if os.path.exists(ready):
        os.remove(ready)
    server = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools/fakehub/fakehub.py"), "--root", hub_root,
                               "--ready-file", ready, "--lifetime", "600"], stdout=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if os.path.exists(ready):
                break
            time.sleep(0.05)
        env = dict(os.environ, HF_ENDPOINT=json.load(open(ready))["hub"], CI="1")
        shutil.rmtree(os.path.join(d, "state"), ignore_errors=True)
        subprocess.run([args.wgpm, "plan"], cwd=d, env=env, check=True, stdout=subprocess.DEVNULL)  # cold: caches fill
        # Make the index hold all 10,000 source files (plan scans sources only when something is missing).
        subprocess.run([args.wgpm, "index", "update"], cwd=d, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        runs, stats = [], None
        for _ in range(5):
            wall, out = timed([args.wgpm, "plan", "--json"], cwd=d, env=env)
            runs.append(wall)
            stats = json.loads(out)["stats"]
        start_cost = statistics.median([timed(["true"])[0] for _ in range(5)])
        ls_cost = statistics.median([timed(["ls", "-lR", os.path.join(d, "store")])[0] for _ in range(5)])
    finally:
        server.terminate()
    warm = statistics.median(runs)
    rows.append("")
    rows.append("| warm plan (300 correct files, 10,000 indexed) | median wall | hub requests | files hashed | `ls -lR` of the source ÷ plan |")
    rows.append("|---|---|---|---|---|")
    rows.append("| wgpm plan | %.3f s | %d | %d | %.2f |" % (warm, stats["hub_requests"], stats["files_hashed"] + stats["source_files_hashed"], ls_cost / warm))
    rows.append("")
    rows.append("(process start, `true`: %.3f s)" % start_cost)
    table = "\n".join(rows)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
