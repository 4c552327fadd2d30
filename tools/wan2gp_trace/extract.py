#!/usr/bin/env python3
"""Write one commit of a bare Wan2GP git dir into a folder, skipping blobs the
mirror lacks (a fetched mirror may omit a few large files; `git archive` stops
at the first one). Only the sources that decide downloads are needed.

usage: extract.py GIT_DIR COMMIT DEST
"""
import os
import subprocess
import sys

# The LoRA folders too ("loras" also keeps the root-level loras_i2v/ … of versions before
# 2025-11-28): Wan2GP moves a downloaded LoRA into its folder, and where the folder is missing
# the move makes a file of that name instead.
KEEP = ("wgp.py", "requirements.txt", "models/", "shared/", "defaults/",
        "preprocessing/", "postprocessing/", "plugins/", "loras")


def main():
    git_dir, commit, dest = sys.argv[1:4]
    tree = subprocess.run(["git", "--git-dir", git_dir, "ls-tree", "-r", "-z", commit],
                          check=True, capture_output=True).stdout
    entries = []
    for item in tree.split(b"\0"):
        if not item:
            continue
        meta, path = item.split(b"\t", 1)
        mode, kind, sha = meta.split()
        path = path.decode()
        if kind != b"blob" or mode == b"120000" or not path.startswith(KEEP):
            continue
        if path.endswith((".png", ".jpg", ".mp4", ".gif", ".webp", ".wav", ".mp3")):
            continue
        entries.append((sha.decode(), path))
    proc = subprocess.Popen(["git", "--git-dir", git_dir, "cat-file", "--batch"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    skipped = 0
    for sha, path in entries:
        proc.stdin.write(sha.encode() + b"\n")
        proc.stdin.flush()
        header = proc.stdout.readline().split()
        if len(header) < 3 or header[1] == b"missing":
            skipped += 1
            continue
        data = proc.stdout.read(int(header[2]))
        proc.stdout.read(1)
        target = os.path.join(dest, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(data)
    proc.stdin.close()
    proc.wait()
    print(f"{commit[:8]}: {len(entries) - skipped} files, {skipped} missing blobs skipped",
          file=sys.stderr)


if __name__ == "__main__":
    main()
