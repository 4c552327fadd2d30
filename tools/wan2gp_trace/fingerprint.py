#!/usr/bin/env python3
"""The fingerprint of a Wan2GP checkout's download code, as wgpm computes it
(Sources/Catalog/Checkout.swift): sha256 over the sorted lines
"<path>\\0<hex sha256 of the file>\\n" for wgp.py, every models/**/*_handler.py and
every shared/utils/**/*.py (regular files only; symlinks are neither read nor
entered). Also the same digest over defaults/*.json ("definitions").

usage: fingerprint.py CHECKOUT     prints: <fingerprint> <files> <definitions>
"""
import hashlib
import os
import stat
import sys


def _regular(path):
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _walk(root, sub):
    out, pending = [], [sub]
    while pending:
        rel = pending.pop()
        try:
            names = os.listdir(os.path.join(root, rel))
        except OSError:
            continue
        for name in names:
            child = rel + "/" + name
            try:
                mode = os.lstat(os.path.join(root, child)).st_mode
            except OSError:
                continue
            if stat.S_ISDIR(mode):
                pending.append(child)
            elif stat.S_ISREG(mode):
                out.append(child)
    return out


def fingerprint_files(root):
    files = ["wgp.py"] if _regular(os.path.join(root, "wgp.py")) else []
    files += [p for p in _walk(root, "models") if p.endswith("_handler.py")]
    files += [p for p in _walk(root, "shared/utils") if p.endswith(".py")]
    return sorted(files, key=lambda p: p.encode())


def digest_of(entries):
    """entries: (path, bytes) in any order."""
    lines = b"".join(p.encode() + b"\0" + hashlib.sha256(data).hexdigest().encode() + b"\n"
                     for p, data in sorted(entries, key=lambda e: e[0].encode()))
    return hashlib.sha256(lines).hexdigest()


def _read(root, paths):
    out = []
    for p in paths:
        with open(os.path.join(root, p), "rb") as f:
            out.append((p, f.read()))
    return out


def fingerprint(root):
    files = fingerprint_files(root)
    return digest_of(_read(root, files)), len(files)


def definitions(root):
    try:
        names = os.listdir(os.path.join(root, "defaults"))
    except OSError:
        names = []
    paths = ["defaults/" + n for n in names if n.endswith(".json") and _regular(os.path.join(root, "defaults", n))]
    return digest_of(_read(root, paths))


if __name__ == "__main__":
    fp, n = fingerprint(sys.argv[1])
    print(fp, n, definitions(sys.argv[1]))
