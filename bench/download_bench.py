#!/usr/bin/env python3
"""Download benchmark: wgpm against `curl -o` and huggingface_hub, same files, same local server.

Serves one large file and a set of medium files from tools/fakehub on 127.0.0.1 (file host on
localhost), then downloads them with each client in turn, several rounds, and reports median wall
time, throughput, CPU time and peak memory (GNU time's), with ratios against the peers measured
in the same run. Writes a Markdown table to stdout (and to --out).

With --links, the large file is also fetched across a network: the server runs in a network
namespace of its own behind a veth pair (Hub and file host on two addresses of it), and each
given rate caps the link with a token bucket (`tc tbf`); "veth" leaves it uncapped. Needs root
and iproute2; the namespace is removed at the end.

Usage: bench/download_bench.py --wgpm PATH [--big-mb 2048] [--set 8x128] [--rounds 3]
                               [--links 2500,5000,8000,veth] [--out FILE]
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
    """Runs a command under /usr/bin/time; returns (seconds, max RSS in KiB, CPU seconds)."""
    timefile = "/tmp/wgpm-bench-time.txt"
    full = ["/usr/bin/time", "-o", timefile, "-f", "%e %M %U %S"] + cmd
    start = time.monotonic()
    subprocess.run(full, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.monotonic() - start
    _, rss, user, system = open(timefile).read().split()[-4:]
    return wall, int(rss), float(user) + float(system)


NETNS = "wgpm-bench"
LINK_HOST, LINK_HUB, LINK_CDN = "10.201.0.1", "10.201.0.2", "10.201.0.3"


def ip(*args, netns=False):
    subprocess.run((["ip", "netns", "exec", NETNS] if netns else []) + list(args), check=True)


def make_link():
    """A namespace for the server, joined to this one by a veth pair (wgpmb0 here, wgpmb1 there)."""
    drop_link()
    ip("ip", "netns", "add", NETNS)
    ip("ip", "link", "add", "wgpmb0", "type", "veth", "peer", "name", "wgpmb1")
    ip("ip", "link", "set", "wgpmb1", "netns", NETNS)
    ip("ip", "addr", "add", LINK_HOST + "/24", "dev", "wgpmb0")
    ip("ip", "link", "set", "wgpmb0", "up")
    for addr in (LINK_HUB, LINK_CDN):
        ip("ip", "addr", "add", addr + "/24", "dev", "wgpmb1", netns=True)
    ip("ip", "link", "set", "wgpmb1", "up", netns=True)
    ip("ip", "link", "set", "lo", "up", netns=True)


def set_rate(mbit):
    """Caps what the server sends (the download direction); None removes the cap."""
    subprocess.run(["ip", "netns", "exec", NETNS, "tc", "qdisc", "del", "dev", "wgpmb1", "root"],
                   stderr=subprocess.DEVNULL)
    if mbit:
        ip("tc", "qdisc", "add", "dev", "wgpmb1", "root", "tbf", "rate", "%dmbit" % mbit,
           "burst", "8mb", "latency", "50ms", netns=True)


def drop_link():
    subprocess.run(["ip", "netns", "del", NETNS], stderr=subprocess.DEVNULL)
    subprocess.run(["ip", "link", "del", "wgpmb0"], stderr=subprocess.DEVNULL)


def start_server(hub_root, ready, in_netns):
    if os.path.exists(ready):
        os.remove(ready)
    cmd = [sys.executable, os.path.join(ROOT, "tools/fakehub/fakehub.py"), "--root", hub_root,
           "--ready-file", ready, "--lifetime", "3600"]
    if in_netns:
        cmd = ["ip", "netns", "exec", NETNS] + cmd + ["--host", LINK_HUB, "--cdn-host", LINK_CDN, "--cdn-bind", LINK_CDN]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    for _ in range(200):
        if os.path.exists(ready):
            break
        time.sleep(0.05)
    return server, json.load(open(ready))["hub"]


def make_file(path, size):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # A minimal safetensors header first: wgpm refuses bytes that cannot start the file's format.
    header = (8).to_bytes(8, "little") + b"{}      "
    if os.path.exists(path) and os.path.getsize(path) == size:
        with open(path, "rb") as f:
            if f.read(16) == header:
                return
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        f.write(header)
        left = size - len(header)
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
    # Where the clients write: by default beside the repository, on the disk a user's ckpts
    # would be on; --out-dir /dev/shm/wgpm-bench takes the disk out of the numbers.
    ap.add_argument("--out-dir")
    ap.add_argument("--big-mb", type=int, default=2048)
    ap.add_argument("--set", default="8x128", help="COUNTxMB")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--python", default=sys.executable, help="a Python with huggingface_hub installed")
    ap.add_argument("--links", default="", help="comma-separated link rates in Mbit/s, or veth (uncapped)")
    ap.add_argument("--out")
    args = ap.parse_args()
    args.wgpm = os.path.abspath(args.wgpm)
    work = args.work
    out_dir = args.out_dir or os.path.join(work, "out")
    hub_root = os.path.join(work, "hub")
    count, each_mb = (int(x) for x in args.set.split("x"))
    big = os.path.join(hub_root, "bench", "big", "model.safetensors")
    make_file(big, args.big_mb << 20)
    for i in range(count):
        make_file(os.path.join(hub_root, "bench", "set", "part-%02d.safetensors" % i), each_mb << 20)

    ready = os.path.join(work, "hub.json")
    links = [x for x in args.links.split(",") if x]
    set_files = ["part-%02d.safetensors" % i for i in range(count)]
    big_files = [("bench/big", "model.safetensors")]
    servers = []

    def client_env(hub):
        env = dict(os.environ, HF_ENDPOINT=hub, HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1",
                   HF_HUB_ENABLE_HF_TRANSFER="0", NO_COLOR="1", CI="1")
        env.pop("HF_TOKEN", None)
        return env

    def fresh(name):
        d = os.path.join(out_dir, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        return d

    def wgpm_run(hub, files):
        d = fresh("wgpm")
        with open(os.path.join(d, "config.yaml"), "w") as f:
            f.write("wan2gp_directory: %s/fixtures/wan2gp\nckpts_directory: %s/ckpts\nloras_directory: %s/loras\n"
                    "state_directory: %s/state\nparallel_downloads: 2\nmin_free_gb: 0\n" % (ROOT, d, d, d))
        with open(os.path.join(d, "wgpm.yaml"), "w") as f:
            f.write("version: 1\nfiles:\n")
            for repo, name in files:
                f.write("  - url: https://huggingface.co/%s/resolve/main/%s\n    path: ckpts/%s\n" % (repo, name, name))
        return sh([args.wgpm, "apply", "--yes"], env=client_env(hub), cwd=d)

    def curl_cmd(hub, files, d):
        cmd = ["curl", "-sfL"] + (["--parallel", "--parallel-max", "2"] if len(files) > 1 else [])
        for repo, name in files:
            cmd += ["-o", os.path.join(d, name), "%s/%s/resolve/main/%s" % (hub, repo, name)]
        return cmd

    def curl_run(hub, files):
        return sh(curl_cmd(hub, files, fresh("curl")), env=client_env(hub))

    def curl_verify_run(hub, files):
        # What people do by hand: download, then check the sha256 (a second read, from the page
        # cache here). openssl uses SHA-NI like wgpm; sha256sum (coreutils 9.1) does not.
        d = fresh("curl-verify")
        cmd = curl_cmd(hub, files, d)
        paths = " ".join(os.path.join(d, name) for _, name in files)
        script = "%s && printf '%%s\\n' %s | xargs -P 2 -n %d openssl dgst -sha256 >/dev/null" % (
            " ".join("'%s'" % c for c in cmd), paths, max(1, (len(files) + 1) // 2))
        return sh(["sh", "-c", script], env=client_env(hub))

    def hf_run(hub, files):
        d = fresh("hf")
        code = ("import sys\nfrom concurrent.futures import ThreadPoolExecutor\n"
                "from huggingface_hub import hf_hub_download\n"
                "files = %r\n"
                "with ThreadPoolExecutor(2) as ex:\n"
                "    list(ex.map(lambda f: hf_hub_download(f[0], f[1], cache_dir=%r), files))\n") % (files, d)
        return sh([args.python, "-c", code], env=client_env(hub))

    def warm(hub):
        # The server's identity cache (it hashes each file once) and the page cache.
        for repo in ("bench/big", "bench/set"):
            subprocess.run(["curl", "-s", "-o", "/dev/null", "%s/api/models/%s/tree/main?recursive=true" % (hub, repo)], check=True)
        for name in set_files:
            subprocess.run(["curl", "-sI", "-o", "/dev/null", "%s/bench/set/resolve/main/%s" % (hub, name)], check=True)
        subprocess.run(["curl", "-sL", "-o", "/dev/null", "%s/bench/big/resolve/main/model.safetensors" % hub], check=True)

    clients = [("curl -o", curl_run), ("wgpm apply", wgpm_run), ("curl -o, then openssl sha256", curl_verify_run),
               ("huggingface_hub", hf_run)]
    results = {}

    def measure(label, hub, files, size):
        # Clients take turns within each round, so drifts of the machine (page cache, tmpfs,
        # the other core) hit them alike; one unrecorded warm-up round comes first.
        runs = {client: [] for client, _ in clients}
        for round_no in range(args.rounds + 1):
            for client, fn in clients:
                r = fn(hub, files)
                if round_no > 0:
                    runs[client].append(r)
        for client, _ in clients:
            rs = runs[client]
            results[(label, client)] = (statistics.median(r[0] for r in rs), max(r[1] for r in rs),
                                        statistics.median(r[2] for r in rs), size)
            print("%-40s %-30s %s" % (label, client, " ".join("%.2f" % r[0] for r in rs)), file=sys.stderr)

    scenarios = []
    try:
        server, hub = start_server(hub_root, ready, in_netns=False)
        servers.append(server)
        warm(hub)
        for label, files, size in [("one %d MiB file, loopback" % args.big_mb, big_files, args.big_mb << 20),
                                   ("%d files of %d MiB, loopback" % (count, each_mb),
                                    [("bench/set", n) for n in set_files], count * (each_mb << 20))]:
            measure(label, hub, files, size)
            scenarios.append((label, size))
        server.terminate()
        if links:
            make_link()
            server, hub = start_server(hub_root, ready, in_netns=True)
            servers.append(server)
            warm(hub)
            for link in links:
                mbit = None if link == "veth" else int(link)
                set_rate(mbit)
                label = "one %d MiB file, %s" % (args.big_mb, "veth, uncapped" if mbit is None else "veth at %d Mbit/s" % mbit)
                measure(label, hub, big_files, args.big_mb << 20)
                scenarios.append((label, args.big_mb << 20))
        lines = ["| scenario | client | median wall | throughput | CPU time | peak RSS | wgpm speed ÷ this |",
                 "|---|---|---|---|---|---|---|"]
        for label, size in scenarios:
            wg = results[(label, "wgpm apply")][0]
            for client, _ in clients:
                wall, rss, cpu, size = results[(label, client)]
                lines.append("| %s | %s | %.2f s | %.0f MB/s | %.2f s | %.0f MiB | %.2f |" % (
                    label, client, wall, size / wall / 1e6, cpu, rss / 1024, wall / wg))
        table = "\n".join(lines)
        print(table)
        if args.out:
            with open(args.out, "w") as f:
                f.write(table + "\n")
    finally:
        for server in servers:
            server.terminate()
        if links:
            drop_link()
        shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
