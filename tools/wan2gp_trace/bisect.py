#!/usr/bin/env python3
"""Find where Wan2GP's download knowledge changes between traced commits, tracing
only the commits a binary search needs, and say which knowledge each commit takes.

usage: bisect.py GIT_DIR COMMITS_JSON KNOWN_DIR WORK_DIR WGPM [--budget N] [--deadline HH:MM]

KNOWN_DIR holds knowledge files <c8>.json of already traced commits and the index of
commits they are bundled for (wgpm's Sources/Catalog/Resources/knowledge). The history is
walked line by line: the first-parent line, then each merged branch's own first-parent
chain between its fork point and its merge. For two commits A < B of a line whose
knowledge is known: knowledge that agrees where both know something, with one end
knowing every architecture the other does, gives every commit between them that end's
knowledge; anything else is searched by tracing the middle commit (trace.py, then `wgpm
trace --trace-file --knowledge-out`, which refuses knowledge that does not reproduce its
trace). Writes WORK_DIR/classes.json: {fingerprint: knowledge name} and the new knowledge
files WORK_DIR/k-<c8>.json. Intervals left when the budget runs out, or whose commits
cannot be traced, get nothing: wgpm says they are unknown.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def read_json(path):
    with open(path) as f:
        return json.load(f)


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
                self.knowledge[f[:8]] = read_json(os.path.join(a.known, f))
                self.names[f[:8]] = f[:8]
        for f in os.listdir(a.work) if os.path.isdir(a.work) else []:  # traced by an earlier run
            if f.startswith("k-") and f.endswith(".json"):
                self.knowledge.setdefault(f[2:10], read_json(os.path.join(a.work, f)))

    def out_of_time(self):
        if self.traces >= self.a.budget:
            return True
        return self.a.deadline is not None and time.time() >= self.a.deadline

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
        ok = os.path.exists(out)  # traced by an earlier run whose wgpm refused the knowledge
        for version in ([] if ok else [pin] + self.a.mmgp_fallbacks):
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
        k = read_json(kpath)
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

    def lines(self, rows):
        """The history as lines a bisection can walk: the first-parent line of the newest
        commit, then for every merge on a line already walked, its merged parent's first-parent
        chain back to where it forked, framed by the fork point and the merge (when they are in
        COMMITS_JSON). Every commit is in exactly one line's inside; lines come parents first,
        so a line's ends are placed before the line is walked."""
        by = {r["commit"]: r for r in rows}
        out = subprocess.run(["git", "--git-dir", self.a.git_dir, "rev-list", "--parents", rows[-1]["commit"]],
                             capture_output=True, text=True, check=True).stdout
        parents = {l.split()[0]: l.split()[1:] for l in out.splitlines()}
        assigned, lines, queue = set(), [], [(rows[-1]["commit"], None)]
        while queue:
            start, merge = queue.pop(0)
            chain, c = [], start
            while c in by and c not in assigned:
                assigned.add(c)
                chain.append(c)
                queue += [(p, c) for p in parents.get(c, [])[1:]]
                c = (parents.get(c) or [None])[0]
            if not chain:
                continue
            line = ([c] if c in by else []) + chain[::-1] + ([merge] if merge else [])
            lines.append([by[x] for x in line])
        return lines

    def known_of(self, row):
        """The knowledge a commit has: traced, or placed (this run or bundled) by fingerprint."""
        c8 = row["commit"][:8]
        if c8 in self.knowledge:
            return self.knowledge[c8], self.name_of(c8)
        name = self.placed.get(row["fingerprint"])
        if name is not None and name in self.knowledge:
            return self.knowledge[name], name
        return None, None

    def run(self, rows, placed):
        """placed: {fingerprint: knowledge name} already bundled; it seeds the anchors."""
        self.placed = dict(placed)
        for line in self.lines(rows):
            self.walk(line)
        for r in rows:  # a traced commit's own answer wins over what was inferred for its code
            if r["commit"][:8] in self.knowledge:
                self.placed[r["fingerprint"]] = self.name_of(r["commit"][:8])
        return self.placed

    def walk(self, line):
        # A line with an end nobody knows (a branch forked before COMMITS_JSON starts, or
        # merged into an unknown commit) gets that end traced first, so it can be bisected.
        for end in (0, len(line) - 1):
            if self.known_of(line[end])[0] is None and not self.out_of_time():
                k = self.trace(line[end])
                if k is not None:
                    self.placed.setdefault(line[end]["fingerprint"], self.name_of(line[end]["commit"][:8]))
        anchors = [i for i, r in enumerate(line) if self.known_of(r)[0] is not None]
        stack = list(zip(anchors, anchors[1:]))[::-1]
        failed = set()
        while stack:
            i, j = stack.pop()
            a, b = line[i], line[j]
            (ka, na), (kb, nb) = self.known_of(a), self.known_of(b)
            side = covering(ka, kb) if ka is not None and kb is not None else None
            if side is not None:
                name = na if side == "a" else nb
                for r in line[i + 1:j]:
                    self.placed.setdefault(r["fingerprint"], name)
                continue
            between = [k for k in range(i + 1, j) if self.known_of(line[k])[0] is None]
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
            self.placed.setdefault(line[m]["fingerprint"], self.name_of(line[m]["commit"][:8]))
            stack += [(m, j), (i, m)]


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
    if a.deadline:  # HH:MM UTC, the next time it comes
        h, m = map(int, a.deadline.split(":"))
        now = time.time()
        today = now - now % 86400 + h * 3600 + m * 60
        a.deadline = today + (86400 if today <= now else 0)
    a.work, a.known = os.path.abspath(a.work), os.path.abspath(a.known)
    os.makedirs(a.work, exist_ok=True)
    rows = read_json(a.commits)
    index = os.path.join(a.known, "index.json")
    placed = {e["fingerprint"]: e["knowledge"] for e in read_json(index)["commits"]} if os.path.exists(index) else {}
    b = Bisect(a)
    classes = b.run(rows, placed)
    json.dump(classes, open(os.path.join(a.work, "classes.json"), "w"), indent=1, sort_keys=True)
    print(f"{len(classes)} fingerprints placed, {b.traces} traces", file=sys.stderr)


if __name__ == "__main__":
    main()
