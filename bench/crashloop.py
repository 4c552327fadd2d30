#!/usr/bin/env python3
"""Crash loop: SIGKILL `wgpm apply` (and `wgpm worker`) at random moments during a multi-file
download, start it again each time, then let it converge, and check what a crash may never do.

A temporary machine (config: wan2gp_directory = fixtures/wan2gp, its own ckpts/loras/state,
bandwidth_limit_kb so the transfers take seconds, parallel_downloads 2) and a manifest whose
`files:` are COUNT generated files of MIN..MAX MiB in a fake Hub repo (all LFS, served by the fake
file host). Then, --kills times: start `wgpm apply --yes` (or, with probability --worker-share,
`wgpm worker`), SIGKILL it after a random delay, and look at the disk. Finally one apply without
a kill. Fails when:
  - a file at its final path ever has bytes other than the served ones (checked after each kill);
  - a run that was not killed exits non-zero;
  - the final apply does not exit 0, a final file is missing or wrong, a `.wgpm-tmp-*` or a
    partial download is left, or `wgpm plan --detailed-exitcode` does not say "No changes" (0);
  - a run asks for a file from an offset below the size of the partial file the killed run left;
  - the file host sent more than --max-ratio times the total size (the re-fetch ratio), counted
    from the fake Hub's JSONL log (`bytes` of the cdn listener; transfers cut off by a kill are
    logged by this script's wrapper of the server, which the plain fake Hub does not log).

Usage: crashloop.py --wgpm PATH [--kills 25] [--seed S] [--files 16] [--min-mib 10] [--max-mib 24]
                    [--bandwidth-kb 8192] [--max-delay 2.5] [--worker-share 0.25] [--max-ratio 1.5]
       crashloop.py --serve-hub ROOT LOG READY      (internal: the fake Hub with abort logging)
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = "crashloop/files"
SNDBUF = 64 << 10


def serve_hub(root, log, ready):
    """The fake Hub, plus a log line for each transfer a dying client cut off: the plain server
    logs a file-host transfer only when it completes, which would hide exactly the bytes a kill
    wastes. Counts what os.sendfile handed to the kernel (as the completed transfers do)."""
    sys.path.insert(0, os.path.join(ROOT, "tools", "fakehub"))
    import fakehub
    real_sendfile = os.sendfile
    local = threading.local()

    def counting_sendfile(out_fd, in_fd, offset, count):
        n = real_sendfile(out_fd, in_fd, offset, count)
        local.sent = getattr(local, "sent", 0) + n
        return n

    os.sendfile = counting_sendfile
    original = fakehub.Handler.send_file

    def send_file(self, full, info, headers, head):
        local.sent = 0
        # A small send buffer keeps "sent" close to "received": on loopback the kernel would
        # otherwise take megabytes of a file at once, and a client killed right after would
        # count them as sent. (2 x 64 KiB after the kernel's doubling.)
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
        try:
            return original(self, full, info, headers, head)
        except (BrokenPipeError, ConnectionResetError):
            self.record(499, local.sent)  # 499: the client closed the connection
            raise

    fakehub.Handler.send_file = send_file

    def record(self, status, sent):
        # fakehub's log line, plus when the transfer started: a line is written when a transfer
        # ends, which for one cut off by a kill can be after the next run has begun.
        line = json.dumps({"listener": self.listener, "method": self.command, "path": self.path, "status": status,
                           "auth": "Authorization" in self.headers, "range": self.headers.get("Range"),
                           "bytes": sent, "time": time.time(), "start": getattr(local, "start", None)}, sort_keys=True)
        with fakehub.LOG_LOCK, open(fakehub.LOG_PATH, "a") as f:
            f.write(line + "\n")

    fakehub.Handler.record = record
    original_dispatch = fakehub.Handler.dispatch

    def dispatch(self, head):
        local.start = time.time()
        return original_dispatch(self, head)

    fakehub.Handler.dispatch = dispatch
    sys.argv = ["fakehub.py", "--root", root, "--log", log, "--ready-file", ready, "--lifetime", "3600"]
    fakehub.main()


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                return h.hexdigest()
            h.update(chunk)


def make_files(hub_root, rng, count, min_mib, max_mib, big_mib=0):
    """COUNT files of random size in [MIN MiB, MAX MiB] (all LFS), half of them bound for loras/,
    and with BIG_MIB one more of that size (at least 64 MiB: fetched over several connections)."""
    files = []
    for i in range(count + (1 if big_mib else 0)):
        size = rng.randint(min_mib << 20, max_mib << 20) if i < count else big_mib << 20
        name = "part-%02d.safetensors" % i
        path = os.path.join(hub_root, REPO, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        seed = rng.getrandbits(64).to_bytes(8, "big")
        block = hashlib.sha512(seed).digest() * 2048  # 128 KiB, varied per block below
        with open(path, "wb") as f:
            # A minimal safetensors header first: wgpm refuses bytes that cannot start the file's
            # format (an 8-byte little-endian header length, then '{').
            header = b"{}      "
            f.write(len(header).to_bytes(8, "little") + header)
            left, n = size - 16, 0
            while left > 0:
                chunk = n.to_bytes(8, "big") + block[8:]
                f.write(chunk[:left])
                left -= len(chunk)
                n += 1
        target = ("ckpts/crash/" if i % 2 == 0 else "loras/wan/crash/") + name
        files.append({"name": name, "target": target, "size": size, "sha256": sha256_of(path)})
    return files


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve-hub", nargs=3, metavar=("ROOT", "LOG", "READY"))
    ap.add_argument("--wgpm")
    ap.add_argument("--kills", type=int, default=25)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--files", type=int, default=16)
    ap.add_argument("--min-mib", type=int, default=10)
    ap.add_argument("--max-mib", type=int, default=24)
    ap.add_argument("--bandwidth-kb", type=int, default=8192)
    ap.add_argument("--min-delay", type=float, default=0.3)
    ap.add_argument("--max-delay", type=float, default=2.5)
    ap.add_argument("--worker-share", type=float, default=0.25)
    ap.add_argument("--max-ratio", type=float, default=1.5)
    ap.add_argument("--big-mib", type=int, default=0,
                    help="one more file of this size (>= 64: a segmented download over several connections)")
    ap.add_argument("--work", help="work folder (default: a temporary one, removed on success)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()
    if args.serve_hub:
        return serve_hub(*args.serve_hub)
    if not args.wgpm:
        ap.error("--wgpm is required")
    args.wgpm = os.path.abspath(args.wgpm)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    rng = random.Random(seed)
    work = os.path.abspath(args.work) if args.work else tempfile.mkdtemp(prefix="wgpm-crashloop-")
    if args.work:
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
    print("crashloop: seed %d, %d kills, %d files of %d..%d MiB%s, %d KB/s, work %s"
          % (seed, args.kills, args.files, args.min_mib, args.max_mib,
             " and one of %d MiB" % args.big_mib if args.big_mib else "", args.bandwidth_kb, work))
    hub_root, log, ready = os.path.join(work, "hub"), os.path.join(work, "hub-requests.jsonl"), os.path.join(work, "hub.json")
    if args.min_mib < 1 or args.max_mib < args.min_mib:
        ap.error("need 1 <= --min-mib <= --max-mib (files of 1 MiB or more are LFS, served by the file host)")
    files = make_files(hub_root, rng, args.files, args.min_mib, args.max_mib, args.big_mib)
    total = sum(f["size"] for f in files)
    data = os.path.join(work, "wan2gp-data")
    with open(os.path.join(work, "config.yaml"), "w") as f:
        f.write("wan2gp_directory: %s/fixtures/wan2gp\nckpts_directory: %s/ckpts\nloras_directory: %s/loras\n"
                "state_directory: %s/state\nbandwidth_limit_kb: %d\nparallel_downloads: 2\nmin_free_gb: 0\n"
                % (ROOT, data, data, work, args.bandwidth_kb))
    with open(os.path.join(work, "wgpm.yaml"), "w") as f:
        f.write("version: 1\nfiles:\n")
        for x in files:
            f.write("  - url: https://huggingface.co/%s/resolve/main/%s\n    path: %s\n" % (REPO, x["name"], x["target"]))

    server = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve-hub", hub_root, log, ready],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    problems = []
    try:
        for _ in range(200):
            if os.path.exists(ready):
                break
            time.sleep(0.05)
        hub = json.load(open(ready))["hub"]
        env = dict(os.environ, HF_ENDPOINT=hub, WGPM_CONFIG=os.path.join(work, "config.yaml"), NO_COLOR="1")
        env.pop("HF_TOKEN", None)

        def start(cmd):
            out = open(os.path.join(work, "last-run.log"), "w")
            return subprocess.Popen([args.wgpm] + cmd, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True), out

        def final_path(x):
            return os.path.join(data, x["target"])

        def check(when):
            """Every file at a final path is complete and right; returns how many are there."""
            present = 0
            for x in files:
                p = final_path(x)
                if not os.path.lexists(p):
                    continue
                present += 1
                size = os.path.getsize(p) if os.path.exists(p) else -1
                if size != x["size"] or sha256_of(p) != x["sha256"]:
                    problems.append("%s: %s has wrong bytes at its final path (%d of %d bytes)" % (when, x["target"], size, x["size"]))
            return present

        def leftovers():
            tmp, partial = [], []
            for dirpath, dirnames, names in os.walk(data):
                for n in names + dirnames:
                    full = os.path.join(dirpath, n)
                    if n.startswith(".wgpm-tmp-"):
                        tmp.append(full)
                    elif "/.wgpm-partial" in dirpath and n.endswith(".part"):
                        partial.append(full)
            return tmp, partial

        def partials():
            """sha256 -> size of its partial download on disk, or for a segmented one (a sparse
            file with a map beside it) the list of [start, end) ranges its map names."""
            out = {}
            for root in ("ckpts", "loras"):
                d = os.path.join(data, root, ".wgpm-partial")
                for n in os.listdir(d) if os.path.isdir(d) else []:
                    if n.endswith(".part"):
                        out[n.split("-")[0]] = os.path.getsize(os.path.join(d, n))
                for n in os.listdir(d) if os.path.isdir(d) else []:
                    if n.endswith(".part.map"):
                        try:
                            out[n.split("-")[0]] = json.load(open(os.path.join(d, n)))["written"]
                        except (OSError, ValueError, KeyError):
                            pass
            return out

        kills = finished = workers = 0
        history = []
        runs = []  # (start time, partial sizes left on disk before it started)
        left = {}
        start_time = time.monotonic()
        for i in range(args.kills):
            cmd = ["worker"] if rng.random() < args.worker_share else ["apply", "--yes"]
            workers += cmd == ["worker"]
            delay = rng.uniform(args.min_delay, args.max_delay)
            runs.append((time.time(), left))
            proc, out = start(cmd)
            try:
                code = proc.wait(timeout=delay)
                finished += 1
                out.close()
                if code != 0:
                    problems.append("run %d (%s) exited %d without being killed: %s" % (
                        i + 1, " ".join(cmd), code, open(out.name).read()[-800:].strip()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                out.close()
                kills += 1
            present = check("after run %d (%s, %.2f s)" % (i + 1, " ".join(cmd), delay))
            history.append(present)
            left = partials()
        loop_seconds = time.monotonic() - start_time

        runs.append((time.time(), left))
        proc, out = start(["apply", "--yes"])
        code = proc.wait(timeout=600)
        out.close()
        if code != 0:
            problems.append("the final apply exited %d: %s" % (code, open(out.name).read()[-1500:].strip()))
        present = check("after the final apply")
        if present != len(files):
            problems.append("after the final apply only %d of %d files are at their final paths" % (present, len(files)))
        tmp, partial = leftovers()
        if tmp:
            problems.append("left behind: %s" % ", ".join(tmp))
        if partial:
            problems.append("partial downloads left behind: %s" % ", ".join(partial))
        plan = subprocess.run([args.wgpm, "plan", "--detailed-exitcode"], cwd=work, env=env,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if plan.returncode != 0 or "No changes" not in plan.stdout:
            problems.append("wgpm plan --detailed-exitcode exited %d after convergence: %s"
                            % (plan.returncode, (plan.stdout + plan.stderr)[-800:].strip()))

        cdn = [json.loads(line) for line in open(log)]
        cdn = [r for r in cdn if r["listener"] == "cdn"]
        sent = sum(r["bytes"] for r in cdn)
        cut = [r for r in cdn if r["status"] == 499]
        ranged = [r for r in cdn if r["range"]]
        ratio = sent / total
        # Each run's first request for a file should continue the partial that the run before
        # left on disk: a lower offset means a partial was cut back or thrown away.
        below = []
        cdn.sort(key=lambda r: r["start"])
        for n, (begin_time, sizes) in enumerate(runs):
            end_time = runs[n + 1][0] if n + 1 < len(runs) else float("inf")
            seen = set()
            for r in cdn:
                sha = r["path"].split("?")[0].rsplit("/", 1)[-1]
                if not (begin_time <= r["start"] < end_time):
                    continue
                offset = int(r["range"][6:].split("-")[0]) if r["range"] else 0
                if isinstance(sizes.get(sha), list):
                    # Segmented: no request of the run may start inside a range the map kept.
                    for a, b in sizes[sha]:
                        if a <= offset < b:
                            below.append("run %d asked for %s… from %d, inside the kept range %d-%d" % (n + 1, sha[:12], offset, a, b))
                    continue
                if sha in seen:
                    continue
                seen.add(sha)
                if sha in sizes and offset < sizes[sha]:
                    below.append("run %d asked for %s… from %d with %d bytes on disk" % (n + 1, sha[:12], offset, sizes[sha]))
        # Where the bytes sent again went: after each transfer of a file, the next one of the same
        # file starts at the resume offset; what the host had sent beyond it was fetched twice.
        # wgpm writes in 1 MiB slots, so the tail of an unfinished slot is always lost; whole MiB
        # lost beyond that were in flight (socket buffers) or queued for the writer at the kill.
        per_file = {}
        for r in cdn:
            begin = int(r["range"][6:].split("-")[0]) if r["range"] else 0
            per_file.setdefault(r["path"].split("?")[0], []).append((begin, begin + r["bytes"]))
        slot_tail = beyond = restarts = 0
        mib = 1 << 20
        for transfers in per_file.values():
            for (_, end), (resume, _) in zip(transfers, transfers[1:]):
                whole = end // mib * mib
                slot_tail += end - max(whole, resume) if end > resume else 0
                beyond += max(0, min(whole, end) - resume)
                restarts += resume == 0 and end >= mib
        if below:
            problems.append("%d resumes started below the partial file left on disk: %s" % (len(below), "; ".join(below[:5])))
        if ratio > args.max_ratio:
            problems.append("the file host sent %.2f× the total size (bound %.2f×)" % (ratio, args.max_ratio))
        print("crashloop: %d runs killed, %d finished before their kill (%d of all runs were 'worker'), %.1f s"
              % (kills, finished, workers, loop_seconds))
        print("crashloop: files at their final paths after each run: %s" % " ".join(map(str, history)))
        print("crashloop: file host: %d transfers (%d with Range, %d cut off by a kill), %.1f MiB sent for %.1f MiB of files"
              % (len(cdn), len(ranged), len(cut), sent / 2**20, total / 2**20))
        print("crashloop: sent again: %.1f MiB in unfinished 1 MiB slots, %.1f MiB of whole MiB beyond them;"
              " %d restarts from 0 after 1 MiB or more had been sent" % (slot_tail / mib, beyond / mib, restarts))
        print("crashloop: %d restarts below the partial left on disk%s" % (len(below), "".join("\n  " + b for b in below[:10])))
        print("crashloop: re-fetch ratio %.3f (bound %.2f): %.1f MiB sent again, %.2f MiB per kill"
              % (ratio, args.max_ratio, (sent - total) / 2**20, (sent - total) / 2**20 / max(1, kills)))
    finally:
        server.terminate()
        server.wait()
    if problems:
        for p in problems:
            print("crashloop: FAIL: " + p, file=sys.stderr)
        print("crashloop: %d problem(s); work folder kept: %s (rerun with --seed %d)" % (len(problems), work, seed), file=sys.stderr)
        return 1
    print("crashloop: ok: every final file right after every kill, converged, no leftovers, plan says no changes")
    if not args.keep and not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
