#!/usr/bin/env python3
"""Builds small synthetic Hub repos for the Hugging Face URLs found in its input.

Reads text (e.g. `wgpm show MODEL --json`, or the model definitions themselves) from the files
named on the command line or from stdin, finds every https://huggingface.co/ORG/REPO/resolve/REV/PATH,
and writes <root>/ORG/REPO/PATH with deterministic content: bytes derived from the URL, 1 to
--max-kib KiB long. Existing files are left alone, so a test can change one and keep the rest.

Usage: generate.py --root DIR [--max-kib N] [FILE ...]
"""
import argparse
import hashlib
import os
import re
import sys
import urllib.parse

URL = re.compile(r"https://huggingface\.co/([^/\s\"']+)/([^/\s\"']+)/resolve/([^/\s\"']+)/([^\s\"'|\\]+)")


def content(url, max_kib):
    seed = hashlib.sha256(url.encode()).digest()
    size = 1024 + int.from_bytes(seed[:4], "big") % (max_kib * 1024 - 1023)
    block = hashlib.sha512(seed).digest()
    out = bytearray()
    while len(out) < size:
        block = hashlib.sha512(block).digest()
        out += block
    return bytes(out[:size])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--max-kib", type=int, default=64)
    ap.add_argument("inputs", nargs="*")
    args = ap.parse_args()
    texts = [open(p, encoding="utf-8").read() for p in args.inputs] if args.inputs else [sys.stdin.read()]
    made = 0
    for text in texts:
        for org, repo, _rev, path in URL.findall(text):
            path = urllib.parse.unquote(path.split("?")[0])
            if ".." in path.split("/"):
                continue
            dest = os.path.join(args.root, org, repo, path)
            if os.path.exists(dest):
                continue
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as f:
                f.write(content("https://huggingface.co/%s/%s/resolve/main/%s" % (org, repo, path), args.max_kib))
            made += 1
    print("generated %d files under %s" % (made, args.root))


if __name__ == "__main__":
    main()
