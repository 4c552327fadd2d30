#!/usr/bin/env python3
"""Builds small synthetic Hub repos for the Hugging Face URLs found in its input.

Reads text (e.g. `wgpm show MODEL --json`, or the model definitions themselves) from the files
named on the command line or from stdin, finds every https://huggingface.co/ORG/REPO/resolve/REV/PATH,
and writes <root>/ORG/REPO/PATH with deterministic content: bytes derived from the URL, 1 to
--max-kib KiB long. Existing files are left alone, so a test can change one and keep the rest.

The content starts the way its extension's format does, so a check of a file's first bytes accepts
it; the size depends only on the URL. The formats:
  .safetensors, .sft  a complete safetensors file: 8-byte little-endian header length H, a JSON
                      header of H bytes ({"__metadata__":{"seed":…},"data":{"dtype":"U8",…}}
                      padded with spaces to a multiple of 8), then the one U8 tensor's bytes
  .gguf               GGUF, version 3 (uint32 LE), 0 tensors, 0 metadata entries, then bytes
  .pt .pth .ckpt .pkl a zip local-file header (PK\x03\x04, one stored entry archive/data.pkl with
                      its CRC and sizes) and the entry's bytes; no central directory
  .json               a JSON object {"seed": "<hex>", "pad": "<hex>"} of exactly the size
  anything else       pseudo-random bytes
Other scripts can import content(url, max_kib).

Usage: generate.py --root DIR [--max-kib N] [FILE ...]
"""
import argparse
import hashlib
import json
import os
import re
import struct
import sys
import urllib.parse
import zlib

URL = re.compile(r"https://huggingface\.co/([^/\s\"']+)/([^/\s\"']+)/resolve/([^/\s\"']+)/([^\s\"'|\\]+)")


def pseudo_random(seed, size):
    block = hashlib.sha512(seed).digest()
    out = bytearray()
    while len(out) < size:
        block = hashlib.sha512(block).digest()
        out += block
    return bytes(out[:size])


def safetensors_start(seed_hex, size):
    """Header length and header for one U8 tensor that fills a file of `size` bytes."""
    length = 0
    while True:
        n = size - 8 - length
        header = json.dumps({"__metadata__": {"seed": seed_hex},
                             "data": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}},
                            separators=(",", ":")).encode()
        if len(header) <= length:
            return struct.pack("<Q", length) + header.ljust(length, b" ")
        length = (len(header) + 7) // 8 * 8


def zip_start(data):
    """A zip local-file header for one stored entry holding `data`."""
    name = b"archive/data.pkl"
    return struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0x21, zlib.crc32(data), len(data), len(data),
                       len(name), 0) + name


def formatted(name, seed, size):
    """`size` deterministic bytes from `seed` that start as a file called `name` does."""
    ext = name.rsplit("/", 1)[-1].rsplit(".", 1)[-1].lower() if "." in name.rsplit("/", 1)[-1] else ""
    data = pseudo_random(seed, size)
    if ext in ("safetensors", "sft"):
        start = safetensors_start(seed.hex()[:16], size)
    elif ext == "gguf":
        start = b"GGUF" + struct.pack("<IQQ", 3, 0, 0)
    elif ext in ("pt", "pth", "ckpt", "pkl"):
        start = zip_start(data[30 + len(b"archive/data.pkl"):])
    elif ext == "json":
        head = '{"seed": "%s", "pad": "' % seed.hex()
        pad = data.hex()[:size - len(head) - 2]
        return (head + pad + '"}').encode()
    else:
        start = b""
    return start + data[len(start):]


def content(url, max_kib):
    seed = hashlib.sha256(url.encode()).digest()
    size = 1024 + int.from_bytes(seed[:4], "big") % (max_kib * 1024 - 1023)
    return formatted(urllib.parse.urlsplit(url).path, seed, size)


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
