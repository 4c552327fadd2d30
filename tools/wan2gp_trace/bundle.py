#!/usr/bin/env python3
"""Put what bisect.py learned into wgpm's bundled knowledge: new knowledge files and
an index entry for every commit whose fingerprint has knowledge.

usage: bundle.py COMMITS_JSON BISECT_WORK KNOWLEDGE_DIR
"""
import json
import os
import sys


def main():
    commits, work, kdir = sys.argv[1:4]
    rows = json.load(open(commits))
    classes = json.load(open(os.path.join(work, "classes.json")))
    index_path = os.path.join(kdir, "index.json")
    known = {e["fingerprint"]: e["knowledge"] for e in json.load(open(index_path))["commits"]}
    # bisect.py started from this index and its own traces win over what was inferred before
    # (a commit traced now whose answer differs from the knowledge it was given).
    known.update(classes)
    for name in sorted(set(known.values())):
        target = os.path.join(kdir, f"{name}.json")
        if name == "8681e9f7" or os.path.exists(target):
            continue
        k = json.load(open(os.path.join(work, f"k-{name}.json")))
        with open(target, "w") as f:
            f.write(json.dumps(k, indent=0, sort_keys=True, separators=(",", ":")) + "\n")
    out = [dict(r, knowledge=known[r["fingerprint"]]) for r in rows if r["fingerprint"] in known]
    with open(index_path, "w") as f:
        f.write(json.dumps({"format_version": 1, "commits": out}, indent=1, sort_keys=True) + "\n")
    print(f"{len(out)} of {len(rows)} commits have knowledge ({len(set(known.values()))} files)")


if __name__ == "__main__":
    main()
