#!/usr/bin/env python3
"""Download benchmark: wgpm against `curl -o` and huggingface_hub, same files, same local server.

Serves one large file and a set of medium files from tools/fakehub on 127.0.0.1 (file host on
localhost), then downloads them with each client in turn, several rounds, and reports median wall
time, throughput and peak memory (GNU time's max RSS), with ratios against the peers measured in
the same run. Writes a Markdown table to stdout (and to --out).

Usage: bench/download_bench.py --wgpm PATH [--big-mb 2048] [--set 8x128] [--rounds 3] [--out FILE]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(cmd, env=None, cwd=None):
    """Runs a command under /usr/bin/time; returns (seconds, max RSS in KiB)."""
    timefile = "/tmp/wgpm-bench-time.txt"
    full = ["/usr/bin/time", "-o", timefile, "-f", "%e %M"] + cmd
    start = time.monotonic()
    subprocess.run(full, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.monotonic() - start
    _, rss = open(timefile).read().split()[-2:]
    return wall, int(rss)


def make_file(path, size):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path) and os.path.getsize(path) == size:
        return
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        left = size
        i = 0
        while left > 0:
            chunk = bytes([i & 0xFF]) + block[1:]  # each MiB differs, so the hash covers every block
            f.write(chunk[:left])
            left -= len(chunk)
            i += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wgpm", required=True)
    ap.add_argument("--work", default=os.path.join(ROOT, "bench-work"))
    ap.add_argument("--out-dir", default="/dev/shm/wgpm-bench" if os.path.isdir("/dev/shm") else None)
    ap.add_argument("--big-mb", type=int, default=2048)
    ap.add_argument("--set", default="8x128", help="COUNTxMB")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--python", default=sys.executable, help="a Python with huggingface_hub installed")
    ap.add_argument("--out")
    args = ap.parse_args()
    work = args.work
    out_dir = args.out_dir or os.path.join(work, "out")
    hub_root = os.path.join(work, "hub")
    count, each_mb = (int(x) for x in args.set.split("x"))
    big = os.path.join(hub_root, "bench", "big", "model.safetensors")
    make_file(big, args.big_mb << 20)
    for i in range(count):
        make_file(os.path.join(hub_root, "bench", "set", "part-%02d.safetensors" % i), each_mb << 20)

    ready = os.path.join(work, "hub.json")
    if os.path.exists(ready):
        os.remove(ready)
    server = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools/fakehub/fakehub.py"), "--root", hub_root,
                               "--ready-file", ready, "--lifetime", "3600"], stdout=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if os.path.exists(ready):
                break
            time.sleep(0.05)
        hub = json.load(open(ready))["hub"]
        # Warm the server's identity cache (it hashes each file once) and the page cache.
        for repo in ("bench/big", "bench/set"):
            subprocess.run(["curl", "-s", "-o", "/dev/null", "%s/api/models/%s/tree/main?recursive=true" % (hub, repo)], check=True)
        set_files = ["part-%02d.safetensors" % i for i in range(count)]
        for name in set_files:
            subprocess.run(["curl", "-sI", "-o", "/dev/null", "%s/bench/set/resolve/main/%s" % (hub, name)], check=True)
        subprocess.run(["curl", "-sL", "-o", "/dev/null", "%s/bench/big/resolve/main/model.safetensors" % hub], check=True)

        env = dict(os.environ, HF_ENDPOINT=hub, HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1",
                   HF_HUB_ENABLE_HF_TRANSFER="0", NO_COLOR="1", CI="1")
        env.pop("HF_TOKEN", None)

        def fresh(name):
            d = os.path.join(out_dir, name)
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
            return d

        def wgpm_run(files):
            d = fresh("wgpm")
            with open(os.path.join(d, "config.yaml"), "w") as f:
                f.write("wan2gp_directory: %s/fixtures/wan2gp\nckpts_directory: %s/ckpts\nloras_directory: %s/loras\n"
                        "state_directory: %s/state\nparallel_downloads: 2\nmin_free_gb: 0\n" % (ROOT, d, d, d))
            with open(os.path.join(d, "wgpm.yaml"), "w") as f:
                f.write("version: 1\nfiles:\n")
                for repo, name in files:
                    f.write("  - url: https://huggingface.co/%s/resolve/main/%s\n    path: ckpts/%s\n" % (repo, name, name))
            return sh([args.wgpm, "apply", "--yes"], env=env, cwd=d)

        def curl_run(files):
            d = fresh("curl")
            cmd = ["curl", "-sfL"] + (["--parallel", "--parallel-max", "2"] if len(files) > 1 else [])
            for repo, name in files:
                cmd += ["-o", os.path.join(d, name), "%s/%s/resolve/main/%s" % (hub, repo, name)]
            return sh(cmd, env=env)

        def hf_run(files):
            d = fresh("hf")
            code = ("import sys\nfrom concurrent.futures import ThreadPoolExecutor\n"
                    "from huggingface_hub import hf_hub_download\n"
                    "files = %r\n"
                    "with ThreadPoolExecutor(2) as ex:\n"
                    "    list(ex.map(lambda f: hf_hub_download(f[0], f[1], cache_dir=%r), files))\n") % (files, d)
            return sh([args.python, "-c", code], env=env)

        scenarios = [("one %d MiB file" % args.big_mb, [("bench/big", "model.safetensors")], args.big_mb << 20),
                     ("%d files of %d MiB" % (count, each_mb), [("bench/set", n) for n in set_files], count * (each_mb << 20))]
        clients = [("curl -o", curl_run), ("wgpm apply", wgpm_run), ("huggingface_hub", hf_run)]
        results = {}
        for label, files, size in scenarios:
            # Clients take turns within each round, so drifts of the machine (page cache, tmpfs,
            # the other core) hit them alike; one unrecorded warm-up round comes first.
            runs = {client: [] for client, _ in clients}
            for round_no in range(args.rounds + 1):
                for client, fn in clients:
                    r = fn(files)
                    if round_no > 0:
                        runs[client].append(r)
            for client, _ in clients:
                rs = runs[client]
                results[(label, client)] = (statistics.median(r[0] for r in rs), max(r[1] for r in rs), size)
                print("%-24s %-16s %s" % (label, client, ", ".join("%.2fs/%dMiB" % (w, m // 1024) for w, m in rs)), file=sys.stderr)
        lines = ["| scenario | client | median wall | throughput | peak RSS | wgpm speed ÷ this |", "|---|---|---|---|---|---|"]
        for label, _, size in scenarios:
            wg = results[(label, "wgpm apply")][0]
            for client, _ in clients:
                wall, rss, size = results[(label, client)]
                lines.append("| %s | %s | %.2f s | %.0f MB/s | %.0f MiB | %.2f |" % (
                    label, client, wall, size / wall / 1e6, rss / 1024, wall / wg))
        table = "\n".join(lines)
        print(table)
        if args.out:
            with open(args.out, "w") as f:
                f.write(table + "\n")
    finally:
        server.terminate()
        shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
