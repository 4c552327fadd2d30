#!/usr/bin/env python3
"""Every commit (merged branches too) of a Wan2GP git dir from a date to a commit, with
its WanGP_version, the fingerprint of its download code and the digest of its
definitions, computed from git objects directly (no work tree).

usage: index.py GIT_DIR SINCE(YYYY-MM-DD) UNTIL_COMMIT > commits.json
"""
import json
import re
import subprocess
import sys

HERE = __import__("os").path.dirname(__import__("os").path.abspath(__file__))
sys.path.insert(0, HERE)
from fingerprint import digest_of  # noqa: E402


class Objects:
    """`git cat-file --batch` over one pipe."""

    def __init__(self, git_dir):
        self.p = subprocess.Popen(["git", "--git-dir", git_dir, "cat-file", "--batch"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.cache = {}

    def blob(self, sha):
        if sha in self.cache:
            return self.cache[sha]
        self.p.stdin.write(sha.encode() + b"\n")
        self.p.stdin.flush()
        header = self.p.stdout.readline().split()
        if len(header) < 3 or header[1] == b"missing":
            data = None
        else:
            data = self.p.stdout.read(int(header[2]))
            self.p.stdout.read(1)
        self.cache[sha] = data
        return data


def tree(git_dir, commit):
    out = subprocess.run(["git", "--git-dir", git_dir, "ls-tree", "-r", "-z", commit], check=True,
                         capture_output=True).stdout
    for item in out.split(b"\0"):
        if not item:
            continue
        meta, path = item.split(b"\t", 1)
        mode, kind, sha = meta.split()
        if kind == b"blob" and mode != b"120000":  # regular files only, as fingerprint.py
            yield path.decode(), sha.decode()


def in_fingerprint(path):
    return (path == "wgp.py" or (path.startswith("models/") and path.endswith("_handler.py"))
            or (path.startswith("shared/utils/") and path.endswith(".py")))


def main():
    git_dir, since, until = sys.argv[1:4]
    log = subprocess.run(["git", "--git-dir", git_dir, "log", "--format=%H %cs",
                          f"--since={since}", until], check=True, capture_output=True, text=True).stdout
    objects = Objects(git_dir)
    rows = []
    for line in reversed(log.splitlines()):
        commit, date = line.split()
        code, defs, version = [], [], None
        for path, sha in tree(git_dir, commit):
            if in_fingerprint(path):
                data = objects.blob(sha)
                if data is None:
                    raise SystemExit(f"{commit[:8]}: {path} is missing from the mirror; its fingerprint cannot be computed")
                code.append((path, data))
                if path == "wgp.py":
                    m = re.search(rb'^WanGP_version\s*=\s*["\']([^"\']+)', data, re.M)
                    version = m.group(1).decode() if m else None
            elif path.startswith("defaults/") and path.count("/") == 1 and path.endswith(".json"):
                data = objects.blob(sha)
                if data is not None:
                    defs.append((path, data))
        rows.append({"commit": commit, "date": date, "wangp_version": version,
                     "fingerprint": digest_of(code), "definitions": digest_of(defs)})
    json.dump(rows, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
