#!/usr/bin/env python3
"""Find where Wan2GP's download knowledge changes between traced commits, tracing
only the commits a binary search needs, and say which knowledge each commit takes.

usage: bisect.py GIT_DIR COMMITS_JSON KNOWN_DIR WORK_DIR WGPM [--budget N] [--deadline HH:MM]

KNOWN_DIR holds knowledge files <c8>.json of already traced commits (wgpm's
Sources/Catalog/Resources/knowledge). For two traced first-parent commits A < B:
knowledge that agrees where both know something, with one end knowing every
architecture the other does, gives every commit between them that end's
knowledge; anything else is searched by tracing the middle commit (trace.py, then `wgpm trace
--trace-file --knowledge-out`, which refuses knowledge that does not reproduce
its trace). Writes WORK_DIR/classes.json: {fingerprint: knowledge name} and the
new knowledge files WORK_DIR/k-<c8>.json. Commits off the first-parent line, and
intervals left when the budget runs out, get nothing: wgpm says they are unknown.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _key(entries):
    return sorted((e["path"], e["url"], tuple(e.get("settings") or [])) for e in entries)


def _agree(a, b):
    """Equal core set and variant rule, and equal lists for every architecture and model
    override both versions have."""
    if a["variant_rule"] != b["variant_rule"] or _key(a["core"]) != _key(b["core"]):
        return False
    for arch in set(a["architectures"]) & set(b["architectures"]):
        x, y = a["architectures"][arch], b["architectures"][arch]
        if x.get("lora_dir") != y.get("lora_dir") or x.get("dtype") != y.get("dtype") or _key(x["support"]) != _key(y["support"]):
            return False
    for mid in set(a["models"]) & set(b["models"]):
        x, y = a["models"][mid], b["models"][mid]
        if x.get("lora_dir") != y.get("lora_dir") or _key(x.get("support") or []) != _key(y.get("support") or []):
            return False
    return True


def covering(a, b):
    """Which end's knowledge is right for every commit between two traced ones, if either is:
    they agree where both know something, and one knows every architecture and model override
    the other does (so a family added in between is covered). None: search further."""
    if not _agree(a, b):
        return None
    if set(a["architectures"]) <= set(b["architectures"]) and set(a["models"]) <= set(b["models"]):
        return "b"
    if set(b["architectures"]) <= set(a["architectures"]) and set(b["models"]) <= set(a["models"]):
        return "a"
    return None


class Bisect:
    def __init__(self, a):
        self.a = a
        self.traces = 0
        self.knowledge = {}  # c8 -> knowledge dict
        self.names = {}  # c8 -> bundled knowledge name its knowledge equals
        for f in os.listdir(a.known):
            if f.endswith(".json") and f != "index.json":
                self.knowledge[f[:8]] = json.load(open(os.path.join(a.known, f)))
                self.names[f[:8]] = f[:8]
        for f in os.listdir(a.work) if os.path.isdir(a.work) else []:  # traced by an earlier run
            if f.startswith("k-") and f.endswith(".json"):
                self.knowledge.setdefault(f[2:10], json.load(open(os.path.join(a.work, f))))

    def out_of_time(self):
        if self.traces >= self.a.budget:
            return True
        if self.a.deadline:
            h, m = map(int, self.a.deadline.split(":"))
            now = time.gmtime()
            return (now.tm_hour, now.tm_min) >= (h, m) and now.tm_hour < 20
        return False

    def trace(self, row):
        c8 = row["commit"][:8]
        if c8 in self.knowledge:
            return self.knowledge[c8]
        work = self.a.work
        failed_mark = os.path.join(work, f"{c8}.failed")
        if os.path.exists(failed_mark):  # an earlier run could not trace it: not again
            return None
        tree = os.path.join(work, c8)
        if not os.path.isdir(tree):
            subprocess.run([sys.executable, os.path.join(HERE, "extract.py"), self.a.git_dir, row["commit"], tree], check=True)
        pin = None
        req = os.path.join(tree, "requirements.txt")
        if os.path.exists(req):
            for line in open(req):
                if line.strip().startswith("mmgp=="):
                    pin = line.strip().split("==")[1]
        out = os.path.join(work, f"{c8}.trace.json")
        ok = False
        for version in [pin] + self.a.mmgp_fallbacks:
            if version is None:
                continue
            target = os.path.join(work, "mmgp", version)
            if not os.path.isdir(target):
                subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", target, f"mmgp=={version}"],
                               check=False, capture_output=True)
            for _ in range(4):
                r = subprocess.run([sys.executable, os.path.join(HERE, "trace.py"), tree, "--out", out, "--mmgp", target,
                                    "--commit", row["commit"]], capture_output=True, text=True)
                # Some commits list a LoRA folder at import that Wan2GP's installer would have
                # made (loras/ltx2): make it in the extracted tree and trace again.
                missing = re.search(r"No such file or directory: '(loras[^']*)'", r.stderr or "")
                if r.returncode == 0 or not missing or ".." in missing.group(1):
                    break
                os.makedirs(os.path.join(tree, missing.group(1)), exist_ok=True)
            if r.returncode == 0:
                ok = True
                break
            print(f"  {c8}: trace with mmgp {version} failed: {r.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        self.traces += 1
        if not ok:
            open(failed_mark, "w").write(r.stderr[-2000:])
            return None
        cfg = os.path.join(work, f"{c8}.config.yaml")
        with open(cfg, "w") as f:
            f.write(f"wan2gp_directory: {tree}\nstate_directory: {os.path.join(work, 'state')}\n")
        kpath = os.path.join(work, f"k-{c8}.json")
        r = subprocess.run([self.a.wgpm, "trace", "--config", cfg, "--trace-file", out, "--knowledge-out", kpath],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(f"  {c8}: knowledge refused: {r.stderr.strip()[:300]}", file=sys.stderr)
            open(failed_mark, "w").write(r.stderr[-2000:])
            return None
        k = json.load(open(kpath))
        self.knowledge[c8] = k
        print(f"  traced {c8} ({row['date']}, {row['wangp_version']}); {self.traces} traces", file=sys.stderr)
        return k

    def name_of(self, c8):
        """A traced commit's knowledge is stored once per distinct content."""
        if c8 in self.names:
            return self.names[c8]
        for other, name in list(self.names.items()):
            if json.dumps(self.strip(self.knowledge[other]), sort_keys=True) == json.dumps(self.strip(self.knowledge[c8]), sort_keys=True):
                self.names[c8] = name
                return name
        self.names[c8] = c8
        return c8

    @staticmethod
    def strip(k):
        return {x: k[x] for x in ("variant_rule", "core", "architectures", "models")}

    def run(self, rows):
        line = [r for r in rows if r["first_parent"]]
        classes = {}
        anchors = [i for i, r in enumerate(line) if r["commit"][:8] in self.knowledge]
        stack = list(zip(anchors, anchors[1:]))[::-1]
        failed = set()
        while stack:
            i, j = stack.pop()
            a, b = line[i], line[j]
            ka, kb = self.knowledge.get(a["commit"][:8]), self.knowledge.get(b["commit"][:8])
            side = covering(ka, kb) if ka is not None and kb is not None else None
            if side is not None:
                name = self.name_of((a if side == "a" else b)["commit"][:8])
                for r in line[i + 1:j]:
                    if r["fingerprint"] not in (a["fingerprint"], b["fingerprint"]):
                        classes.setdefault(r["fingerprint"], name)
                continue
            between = [k for k in range(i + 1, j) if line[k]["fingerprint"] not in (a["fingerprint"], b["fingerprint"])]
            for k in range(i + 1, j):  # a commit with an end's own code takes that end's knowledge
                for end in (a, b):
                    if line[k]["fingerprint"] == end["fingerprint"] and self.knowledge.get(end["commit"][:8]) is not None:
                        classes.setdefault(end["fingerprint"], self.name_of(end["commit"][:8]))
            # A middle commit that cannot be traced (broken at that commit, an mmgp pin that
            # lacks what it uses) does not end the search: the next one nearest the middle is tried.
            between = [k for k in between if k not in failed]
            if not between or self.out_of_time():
                continue
            middle = (i + j) / 2
            m = min(between, key=lambda k: (abs(k - middle), k))
            if self.trace(line[m]) is None:
                failed.add(m)
                stack.append((i, j))
                continue
            stack += [(m, j), (i, m)]
        for r in line:
            c8 = r["commit"][:8]
            if c8 in self.knowledge:
                classes[r["fingerprint"]] = self.name_of(c8)
        return classes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("git_dir")
    ap.add_argument("commits")
    ap.add_argument("known")
    ap.add_argument("work")
    ap.add_argument("wgpm")
    ap.add_argument("--budget", type=int, default=40)
    ap.add_argument("--deadline")
    ap.add_argument("--mmgp-fallbacks", default="3.6.10", help="mmgp versions to try when the pin fails")
    a = ap.parse_args()
    a.mmgp_fallbacks = a.mmgp_fallbacks.split(",")
    a.work, a.known = os.path.abspath(a.work), os.path.abspath(a.known)
    os.makedirs(a.work, exist_ok=True)
    rows = json.load(open(a.commits))
    fp = set(subprocess.run(["git", "--git-dir", a.git_dir, "log", "--first-parent", "--format=%H", rows[-1]["commit"]],
                            capture_output=True, text=True).stdout.split())
    rows = [dict(r, first_parent=r["commit"] in fp) for r in rows]
    b = Bisect(a)
    classes = b.run(rows)
    json.dump(classes, open(os.path.join(a.work, "classes.json"), "w"), indent=1, sort_keys=True)
    print(f"{len(classes)} fingerprints placed, {b.traces} traces", file=sys.stderr)


if __name__ == "__main__":
    main()
