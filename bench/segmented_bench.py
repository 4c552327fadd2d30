#!/usr/bin/env python3
"""Segmented-download benchmark (issue 11): a file host that caps each connection, behind a capped link.

The server side runs in a network namespace of its own, joined to this one by a veth pair whose
server end is capped with a token bucket (`tc tbf`, --link-mbit). In it, the fake Hub
(tools/fakehub) answers metadata and resolve requests on one address and redirects LFS files to a
file host on a second address; that file host is nginx, serving the same blobs with a
per-connection cap (`limit_rate`, --conn-mbs). Clients run here and take turns within each round
after one unrecorded warm-up round (in which every client's output is also checked by sha256):
  curl -o                  one connection per file
  aria2c -x16 -s16         16 connections per file (--file-allocation=falloc)
  hf_transfer              hf_transfer.download() itself, --hf-transfer-files ranges of 10 MiB in
                           flight (huggingface_hub 1.x/2.x no longer calls hf_transfer)
  huggingface_hub          hf_hub_download, HF_HUB_DISABLE_XET=1
  wgpm apply               fresh state and target; --wgpm-config lines appended to its config.yaml
A set of files is fetched --parallel files at a time by every client (wgpm: parallel_downloads).

How fakehub points at nginx without an option of its own: its redirects name
http://<--cdn-host>:<--cdn-port>, and its own file host binds --cdn-bind:--cdn-port. Binding that
to the namespace's 127.0.0.1 and naming the nginx address as the cdn host, on the same port,
sends every redirect to nginx (fakehub's own file host stays unused).

Writes the Markdown tables to stdout and --out; per-round times go to stderr. Needs root,
iproute2, nginx, aria2, GNU time. Cleans up (nginx, fakehub, namespace) on exit, errors and
Ctrl-C; bench/segmented.sh also removes leftovers of a killed run.
"""
import argparse
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from download_bench import ROOT, make_file, sh  # noqa: E402

NETNS = "wgpm-seg"
VETH_HOST, VETH_SERVER = "wgpms0", "wgpms1"
ADDR_CLIENT, ADDR_HUB, ADDR_FILES = "10.202.0.1", "10.202.0.2", "10.202.0.3"
FILES_PORT = 18080
MIB = 1 << 20


def run(*cmd, netns=False, quiet=False):
    full = (["ip", "netns", "exec", NETNS] if netns else []) + list(cmd)
    subprocess.run(full, check=not quiet, stderr=subprocess.DEVNULL if quiet else None)


def drop_link():
    run("ip", "netns", "del", NETNS, quiet=True)
    run("ip", "link", "del", VETH_HOST, quiet=True)


def make_link(mbit):
    drop_link()
    run("ip", "netns", "add", NETNS)
    run("ip", "link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_SERVER)
    run("ip", "link", "set", VETH_SERVER, "netns", NETNS)
    run("ip", "addr", "add", ADDR_CLIENT + "/24", "dev", VETH_HOST)
    run("ip", "link", "set", VETH_HOST, "up")
    for addr in (ADDR_HUB, ADDR_FILES):
        run("ip", "addr", "add", addr + "/24", "dev", VETH_SERVER, netns=True)
    run("ip", "link", "set", VETH_SERVER, "up", netns=True)
    run("ip", "link", "set", "lo", "up", netns=True)
    if mbit:  # what the server sends: the download direction
        run("tc", "qdisc", "add", "dev", VETH_SERVER, "root", "tbf", "rate", "%dmbit" % mbit,
            "burst", "8mb", "latency", "50ms", netns=True)


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(4 * MIB)
            if not b:
                return h.hexdigest()
            h.update(b)


def blob_ids(paths, cache_file):
    """sha256 of each served file, cached by (size, mtime) between runs."""
    cache = json.load(open(cache_file)) if os.path.exists(cache_file) else {}
    out = {}
    for p in paths:
        st = os.stat(p)
        key = "%s %d %d" % (p, st.st_size, st.st_mtime_ns)
        if key not in cache:
            cache[key] = sha256_of(p)
        out[p] = cache[key]
    with open(cache_file, "w") as f:
        json.dump(cache, f)
    return out


NGINX_CONF = """\
# Written by bench/segmented_bench.py; the file host of the segmented-download benchmark.
daemon off;
master_process on;
worker_processes 1;
user root;
pid %(work)s/nginx.pid;
error_log %(work)s/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    types { }
    default_type application/octet-stream;
    client_body_temp_path %(work)s/nginx-tmp/body;
    proxy_temp_path %(work)s/nginx-tmp/proxy;
    fastcgi_temp_path %(work)s/nginx-tmp/fastcgi;
    uwsgi_temp_path %(work)s/nginx-tmp/uwsgi;
    scgi_temp_path %(work)s/nginx-tmp/scgi;
    server {
        listen %(addr)s:%(port)d;
        root %(root)s;
        # Bytes per second, per connection (per request), as the Hub's file hosts cap them.
        limit_rate %(rate)d;
        location /lfs/ { }
    }
}
"""


def start_nginx(work, blobs, rate):
    """nginx in the namespace serving <root>/lfs/<sha256> (hard links to the blobs)."""
    root = os.path.join(work, "nginx-root")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(os.path.join(root, "lfs"))
    for path, sha in blobs.items():
        dst = os.path.join(root, "lfs", sha)
        try:
            os.link(path, dst)
        except OSError:
            os.symlink(path, dst)
    os.makedirs(os.path.join(work, "nginx-tmp"), exist_ok=True)
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF % {"work": work, "addr": ADDR_FILES, "port": FILES_PORT, "root": root, "rate": rate})
    proc = subprocess.Popen(["ip", "netns", "exec", NETNS, "nginx", "-c", conf, "-p", work],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "nginx-stderr.log"), "w"))
    for _ in range(100):
        if subprocess.run(["curl", "-s", "-o", "/dev/null", "-r", "0-0", "http://%s:%d/lfs/%s" % (
                ADDR_FILES, FILES_PORT, next(iter(blobs.values())))]).returncode == 0:
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise SystemExit("nginx did not start: see %s/nginx-error.log and nginx-stderr.log" % work)


def start_hub(work, hub_root):
    ready = os.path.join(work, "hub.json")
    if os.path.exists(ready):
        os.remove(ready)
    cmd = ["ip", "netns", "exec", NETNS, sys.executable, os.path.join(ROOT, "tools/fakehub/fakehub.py"),
           "--root", hub_root, "--ready-file", ready, "--lifetime", "7200", "--host", ADDR_HUB,
           "--cdn-host", ADDR_FILES, "--cdn-bind", "127.0.0.1", "--cdn-port", str(FILES_PORT)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    for _ in range(200):
        if os.path.exists(ready):
            info = json.load(open(ready))
            with open(os.path.join(work, "fakehub.pid"), "w") as f:
                f.write(str(info["pid"]))
            return proc, info["hub"]
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit("the fake Hub did not start")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wgpm", required=True)
    ap.add_argument("--python", default=sys.executable, help="a Python with huggingface_hub and hf_transfer")
    ap.add_argument("--work", default=os.path.join(ROOT, "bench-work"))
    ap.add_argument("--out-dir", help="where the clients write (default <work>/out, on the disk)")
    ap.add_argument("--big-mb", type=int, default=1024)
    ap.add_argument("--set", default="8x128", help="COUNTxMB")
    ap.add_argument("--parallel", type=int, default=2, help="files at a time for the set, every client")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--link-mbit", type=int, default=4000, help="link cap in Mbit/s (0: uncapped veth)")
    ap.add_argument("--conn-mbs", type=float, default=50, help="nginx limit_rate per connection, MB/s (0: none)")
    ap.add_argument("--hf-transfer-files", type=int, default=16)
    ap.add_argument("--wgpm-config", action="append", default=[],
                    help="a line appended to wgpm's config.yaml, e.g. 'connections_per_file: 16' (repeatable)")
    ap.add_argument("--clients", default="curl,aria2,hf_transfer,huggingface_hub,wgpm")
    ap.add_argument("--only", choices=["big", "set"], help="one workload only")
    ap.add_argument("--out")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (ip netns, tc, nginx in a namespace)")
    args.wgpm = os.path.abspath(args.wgpm)
    args.python = os.path.abspath(args.python)
    work = os.path.join(args.work, "segmented")
    os.makedirs(work, exist_ok=True)
    out_dir = args.out_dir or os.path.join(args.work, "out")
    hub_root = os.path.join(args.work, "hub")  # shared with bench/download.sh: same files
    count, each_mb = (int(x) for x in args.set.split("x"))
    big = os.path.join(hub_root, "bench", "big", "model.safetensors")
    set_paths = [os.path.join(hub_root, "bench", "set", "part-%02d.safetensors" % i) for i in range(count)]
    # download.sh may have left other sizes or more parts behind; the repos hold exactly these.
    if os.path.isdir(os.path.dirname(big)):
        for name in os.listdir(os.path.dirname(big)):
            if name != "model.safetensors":
                os.remove(os.path.join(os.path.dirname(big), name))
    if os.path.isdir(os.path.dirname(set_paths[0])):
        for name in os.listdir(os.path.dirname(set_paths[0])):
            if os.path.join(os.path.dirname(set_paths[0]), name) not in set_paths:
                os.remove(os.path.join(os.path.dirname(set_paths[0]), name))
    make_file(big, args.big_mb * MIB)
    for p in set_paths:
        make_file(p, each_mb * MIB)
    blobs = blob_ids([big] + set_paths, os.path.join(args.work, "sha256-cache.json"))

    procs = []

    def stop(signum, _frame):
        raise SystemExit("stopped by signal %d" % signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)

    def env_for(hub):
        env = dict(os.environ, HF_ENDPOINT=hub, HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1",
                   HF_HUB_ENABLE_HF_TRANSFER="0", NO_COLOR="1", CI="1")
        for var in ("HF_TOKEN", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
            env.pop(var, None)
        return env

    def fresh(name):
        d = os.path.join(out_dir, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        return d

    def urls(hub, files):
        return ["%s/%s/resolve/main/%s" % (hub, repo, name) for repo, name in files]

    def wgpm_cmd(hub, files, d):
        with open(os.path.join(d, "config.yaml"), "w") as f:
            f.write("wan2gp_directory: %s/fixtures/wan2gp\nckpts_directory: %s/ckpts\nloras_directory: %s/loras\n"
                    "state_directory: %s/state\nparallel_downloads: %d\nmin_free_gb: 0\n" % (ROOT, d, d, d, args.parallel))
            for line in args.wgpm_config:
                f.write(line + "\n")
        with open(os.path.join(d, "wgpm.yaml"), "w") as f:
            f.write("version: 1\nfiles:\n")
            for repo, name in files:
                f.write("  - url: https://huggingface.co/%s/resolve/main/%s\n    path: ckpts/%s\n" % (repo, name, name))
        return [args.wgpm, "apply", "--yes"]

    def curl_cmd(hub, files, d):
        cmd = ["curl", "-sfL"] + (["--parallel", "--parallel-max", str(args.parallel)] if len(files) > 1 else [])
        for (_, name), url in zip(files, urls(hub, files)):
            cmd += ["-o", os.path.join(d, name), url]
        return cmd

    def aria2_cmd(hub, files, d):
        listing = os.path.join(work, "aria2-input.txt")
        with open(listing, "w") as f:
            for (_, name), url in zip(files, urls(hub, files)):
                f.write("%s\n  out=%s\n" % (url, name))
        return ["aria2c", "-x16", "-s16", "-j", str(args.parallel), "-q", "--file-allocation=falloc",
                "--allow-overwrite=true", "--auto-file-renaming=false", "-d", d, "-i", listing]

    def hf_transfer_cmd(hub, files, d):
        jobs = [(url, os.path.join(d, name)) for (_, name), url in zip(files, urls(hub, files))]
        code = ("from concurrent.futures import ThreadPoolExecutor\nimport hf_transfer\n"
                "jobs = %r\n"
                "with ThreadPoolExecutor(%d) as ex:\n"
                "    list(ex.map(lambda j: hf_transfer.download(j[0], j[1], max_files=%d, chunk_size=10 * 1024 * 1024,"
                " parallel_failures=0, max_retries=0), jobs))\n") % (jobs, args.parallel, args.hf_transfer_files)
        return [args.python, "-c", code]

    def hf_cmd(hub, files, d):
        code = ("from concurrent.futures import ThreadPoolExecutor\n"
                "from huggingface_hub import hf_hub_download\n"
                "files = %r\n"
                "with ThreadPoolExecutor(%d) as ex:\n"
                "    list(ex.map(lambda f: hf_hub_download(f[0], f[1], cache_dir=%r), files))\n") % (files, args.parallel, d)
        return [args.python, "-c", code]

    all_clients = {"curl": ("curl -o", curl_cmd), "aria2": ("aria2c -x16 -s16", aria2_cmd),
                   "hf_transfer": ("hf_transfer (%d ranges)" % args.hf_transfer_files, hf_transfer_cmd),
                   "huggingface_hub": ("huggingface_hub", hf_cmd), "wgpm": ("wgpm apply", wgpm_cmd)}
    keys = [k for k in args.clients.split(",") if k]
    for k in keys:
        if k not in all_clients:
            raise SystemExit("unknown client %r (known: %s)" % (k, ", ".join(all_clients)))
    clients = [(all_clients[k][0], k, all_clients[k][1]) for k in keys]

    def outputs(d):
        """Regular files a client left (hf's cache: the blobs; wgpm: ckpts), not its state or config."""
        found = []
        for dirpath, dirnames, filenames in os.walk(d):
            dirnames[:] = [x for x in dirnames if x not in ("state", ".locks", "refs")]
            for name in filenames:
                p = os.path.join(dirpath, name)
                if os.path.isfile(p) and not os.path.islink(p) and name not in ("config.yaml", "wgpm.yaml", "wgpm.lock") \
                        and not name.startswith(".") and (dirpath != d or name.endswith(".safetensors")):
                    found.append(p)
        return found

    def check(client, d, paths, verify):
        got = outputs(d)
        want = sorted(os.path.getsize(p) for p in paths)
        if sorted(os.path.getsize(p) for p in got) != want:
            raise SystemExit("%s left %s, not files of sizes %s" % (client, got, want))
        if verify and sorted(sha256_of(p) for p in got) != sorted(blobs[p] for p in paths):
            raise SystemExit("%s wrote wrong bytes (sha256 differs)" % client)

    results, per_round = {}, []

    def measure(label, hub, files, paths):
        runs = {key: [] for _, key, _ in clients}
        for round_no in range(args.rounds + 1):
            for client, key, fn in clients:
                d = fresh(key)
                r = sh(fn(hub, files, d), env=env_for(hub), cwd=d)
                check(client, d, paths, verify=round_no == 0)
                if round_no > 0:
                    runs[key].append(r)
            print("round %d of %s done" % (round_no, label), file=sys.stderr)
        size = sum(os.path.getsize(p) for p in paths)
        for client, key, _ in clients:
            rs = runs[key]
            results[(label, key)] = (statistics.median(r[0] for r in rs), max(r[1] for r in rs),
                                     statistics.median(r[2] for r in rs), size)
            line = "%-28s %-24s %s" % (label, client, " ".join("%.2f" % r[0] for r in rs))
            per_round.append(line)
            print(line, file=sys.stderr)

    workloads = []
    if args.only != "set":
        workloads.append(("one %d MiB file" % args.big_mb, [("bench/big", "model.safetensors")], [big], True))
    if args.only != "big":
        workloads.append(("%d files of %d MiB" % (count, each_mb),
                          [("bench/set", os.path.basename(p)) for p in set_paths], set_paths, False))
    link_bytes = args.link_mbit * 1e6 / 8 if args.link_mbit else None
    try:
        make_link(args.link_mbit)
        procs.append(start_nginx(work, blobs, int(args.conn_mbs * 1e6)))
        hub_proc, hub = start_hub(work, hub_root)
        procs.append(hub_proc)
        # The fake Hub hashes each file once, on first sight; nginx's files go into the page cache.
        for repo in ("bench/big", "bench/set"):
            subprocess.run(["curl", "-sf", "-o", "/dev/null", "%s/api/models/%s/tree/main?recursive=true" % (hub, repo)], check=True)
        for p in [big] + set_paths:
            with open(p, "rb") as f:
                while f.read(8 * MIB):
                    pass
        for label, files, paths, _ in workloads:
            measure(label, hub, files, paths)
        versions = []
        for cmd in (["nginx", "-v"], ["aria2c", "--version"], ["curl", "--version"]):
            p = subprocess.run(cmd, capture_output=True, text=True)
            versions.append((p.stdout + p.stderr).splitlines()[0])
        p = subprocess.run([args.python, "-c", "import huggingface_hub, importlib.metadata as m; print("
                            "'huggingface_hub', huggingface_hub.__version__, 'hf_transfer', m.version('hf_transfer'))"],
                           capture_output=True, text=True)
        versions.append(p.stdout.strip())
        lines = ["Link: %s; file host: nginx, limit_rate %s per connection; %d rounds (median), %d files at a time "
                 "for the set; wgpm extra config: %s." % (
                     "%d Mbit/s (%.0f MB/s) by tc tbf" % (args.link_mbit, link_bytes / 1e6) if link_bytes else "veth, uncapped",
                     "%.0f MB/s" % args.conn_mbs if args.conn_mbs else "none", args.rounds, args.parallel,
                     ", ".join("`%s`" % c for c in args.wgpm_config) or "none"),
                 "", "Versions: " + "; ".join(versions), "",
                 "| workload | client | median wall | throughput | ÷ link | CPU time | peak RSS | wgpm speed ÷ this |",
                 "|---|---|---|---|---|---|---|---|"]
        for label, _, _, _ in workloads:
            wg = results.get((label, "wgpm"), (None,))[0]
            for client, key, _ in clients:
                wall, rss, cpu, size = results[(label, key)]
                lines.append("| %s | %s | %.2f s | %.0f MB/s | %s | %.2f s | %.0f MiB | %s |" % (
                    label, client, wall, size / wall / 1e6,
                    "%.2f" % (size / wall / link_bytes) if link_bytes else "—", cpu, rss / 1024,
                    "%.2f" % (wall / wg) if wg else "—"))
        if ("wgpm" in keys) and len(keys) > 1:
            lines += ["", "| workload | best peer | wgpm ÷ best peer (target ≥ 0.9, single file) "
                      "| wgpm ÷ link (target ≥ 0.85, single file) | wgpm peak RSS (target ≤ 64 MiB) |",
                      "|---|---|---|---|---|"]
            for label, _, _, single in workloads:
                wall, rss, _, size = results[(label, "wgpm")]
                best = min((results[(label, k)][0], c) for c, k, _ in clients if k != "wgpm")
                ok = lambda good: "met" if good else "not met"  # noqa: E731
                ratio_peer, ratio_link = best[0] / wall, (size / wall / link_bytes) if link_bytes else None
                lines.append("| %s | %s | %.2f%s | %s | %.0f MiB, %s |" % (
                    label, best[1], ratio_peer, " (%s)" % ok(ratio_peer >= 0.9) if single else "",
                    ("%.2f" % ratio_link + (" (%s)" % ok(ratio_link >= 0.85) if single else "")) if link_bytes else "—",
                    rss / 1024, ok(rss / 1024 <= 64)))
        lines += ["", "Wall time of each round, seconds:", "", "```"] + per_round + ["```"]
        table = "\n".join(lines)
        print(table)
        if args.out:
            with open(args.out, "w") as f:
                f.write(table + "\n")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        drop_link()
        for name in ("fakehub.pid", "hub.json"):
            if os.path.exists(os.path.join(work, name)):
                os.remove(os.path.join(work, name))
        shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
