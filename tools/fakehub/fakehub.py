#!/usr/bin/env python3
"""A local fake Hugging Face Hub for wgpm's tests, demo and benchmarks.

It behaves as huggingface.co does where wgpm can tell: two listeners with different host
names (the Hub on 127.0.0.1, the file host on localhost), real identities (git blob sha1 for small
files, sha256 for LFS files), deterministic commit ids, tree and paths-info APIs with pagination,
resolve redirects as huggingface.co sends them, Range, the Hub's error codes, 429, and a JSONL
request log. Faults are switchable per test through <root>/_config.json, re-read on every request.

Repos live at <root>/<org>/<name>/<files>; that tree is `main`. Earlier commits stay reachable
by their id when a copy of the repo as it was sits at <root>/_history/<org>/<name>/<commit>/
(tests make one before they move main). _config.json (optional):
  {"tokens": ["hf_good"],
   "repos": {"org/name": {"private": true, "gated": "manual", "granted": ["hf_good"]}},
   "page_size": 1000,
   "cdn_rate_per_connection": 20000000,
   "faults": [{"listener": "cdn", "method": "GET", "path_contains": "x", "count": 1,
               "type": "status|drop|wrong_bytes|ignore_range|shift_range|stall|huge_header", "status": 429,
               "headers": {"Retry-After": "1"}, "after_bytes": 100}]}

`lfs_on_hub: true` redirects LFS files to /lfs/<sha256> on the Hub's own origin (a proxy that keeps
everything on one host); `hide_headers: {"hub": ["X-Repo-Commit"]}` leaves those response headers
out on that listener (a proxy that does not pass them on).

`cdn_rate_per_connection` (bytes/s, default none) paces each file-host reply, as the Hub's CDN
caps each connection; requests on other connections are not slowed by it.

A fault applies to the first `count` (default 1) requests that match its listener, method and
path_contains (the decoded path, without the query) and, with `range_from`, only to requests with
a Range that starts at or after that byte; with `"unless_no_cache": true`, not to requests that
send `Cache-Control: no-cache` (a cache that serves a bad entry until told to fetch it again);
the uses reset when _config.json changes.
Types (the JSONL log line of a request that took a fault has a "fault" key with its type):
  status        error `status` (default 500) with `headers`:      {"type": "status", "status": 429, "headers": {"Retry-After": "1"}}
  drop          file body cut after `after_bytes`, then close:    {"listener": "cdn", "type": "drop", "after_bytes": 100}
  stall         as drop, but first sleeps `seconds` (default 120): {"listener": "cdn", "type": "stall", "after_bytes": 0, "seconds": 30}
  wrong_bytes   first body byte flipped:                         {"listener": "cdn", "type": "wrong_bytes"}
  ignore_range  200 with the whole file whatever the Range:      {"listener": "cdn", "type": "ignore_range"}
  shift_range   a Range from byte a is answered with 206 bytes (a+shift)-b/N, the bytes of that
                other range, as a confused cache might (shift default 4096; a Range from 0 too):
                {"listener": "cdn", "type": "shift_range", "shift": 4096}
The adversarial types:
  redirect      `status` (default 302) with Location: `location`, any scheme; on the hub, for a
                /resolve/ of an existing file, also X-Repo-Commit, X-Linked-Size, X-Linked-Etag of
                the real file, as the normal LFS redirect has:
                {"listener": "hub", "path_contains": "/resolve/", "type": "redirect", "location": "file:///dev/zero"}
  redirect_loop `status` (default 302) to the same URL with hop=N+1 in its query; a request with
                hop= is redirected again without using `count`, so one use is an endless chain:
                {"listener": "cdn", "type": "redirect_loop"}
  endless       200, no Content-Length, Connection: close; the real bytes, then pseudo-random
                bytes until the client goes away (logged with the bytes sent then):
                {"listener": "cdn", "type": "endless"}
  short         the file host serves the file as if it were its first `size` bytes: 200 with
                Content-Length N, 206 bytes a-(N-1)/N, 416 bytes */N for a >= N:
                {"listener": "cdn", "type": "short", "size": 1000, "count": 99}
  html          200 text/html; charset=utf-8, a small "Sign in" page, whatever the path and Range:
                {"listener": "cdn", "type": "html"}
  garbage_start the real file as usual, but a body that starts at offset 0 starts with
                "<!DOCTYPE html>\\n" instead of its first 16 bytes:
                {"listener": "cdn", "type": "garbage_start"}
  huge_header   200 with one response header line of `size` bytes (default 300000):
                {"listener": "cdn", "type": "huge_header"}
  lie_metadata  for entries whose repo path contains `file_contains`, the hub reports `size` and/or
                `sha256` (and an LFS oid to match) instead of the real ones in paths-info, tree,
                revision ?blobs=true and the resolve redirect's X-Linked-Size/X-Linked-Etag; the
                bytes stay real. One request is one use, however many entries it lists:
                {"listener": "hub", "type": "lie_metadata", "file_contains": "x.safetensors", "size": 5, "count": 99}

Usage: fakehub.py --root DIR [--log FILE] [--ready-file FILE]
Prints {"hub": "http://127.0.0.1:P1", "cdn": "http://localhost:P2"} once both listen.
"""
import argparse
import base64
import hashlib
import json
import os
import random
import re
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LFS_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".gguf", ".onnx", ".ckpt", ".tiktoken", ".model")
LFS_MIN_SIZE = 1 << 20
ROOT = None
LOG_PATH = None
LOG_LOCK = threading.Lock()
HUB_URL = CDN_URL = None
FAULT_STATE = {"mtime": None, "used": {}}
FAULT_LOCK = threading.Lock()
OID_CACHE = {}
OID_LOCK = threading.Lock()


def load_config():
    path = os.path.join(ROOT, "_config.json")
    try:
        with open(path) as f:
            cfg = json.load(f)
        mtime = os.stat(path).st_mtime_ns
    except FileNotFoundError:
        cfg, mtime = {}, None
    with FAULT_LOCK:
        if FAULT_STATE["mtime"] != mtime:
            FAULT_STATE["mtime"] = mtime
            FAULT_STATE["used"] = {}
    return cfg


def take_fault(cfg, listener, method, path, range_start=None, headers=None):
    """The first configured fault that matches this request and still has uses left."""
    with FAULT_LOCK:
        for i, fault in enumerate(cfg.get("faults", [])):
            if "unless_no_cache" in fault and "no-cache" in ((headers or {}).get("Cache-Control") or ""):
                continue
            if fault.get("listener", listener) != listener:
                continue
            if fault.get("method", method) != method:
                continue
            if fault.get("path_contains", "") not in path:
                continue
            if "range_from" in fault and (range_start is None or range_start < fault["range_from"]):
                continue
            used = FAULT_STATE["used"].get(i, 0)
            if used >= fault.get("count", 1):
                continue
            FAULT_STATE["used"][i] = used + 1
            return fault
    return None


def looping_fault(cfg, listener, method, path):
    """A redirect_loop fault that already started a chain this request (with hop=) belongs to."""
    with FAULT_LOCK:
        for i, fault in enumerate(cfg.get("faults", [])):
            if fault.get("type") != "redirect_loop" or FAULT_STATE["used"].get(i, 0) == 0:
                continue
            if fault.get("listener", listener) != listener or fault.get("method", method) != method:
                continue
            if fault.get("path_contains", "") in path:
                return fault
    return None


LOGIN_PAGE = (b'<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>Sign in</title></head>\n'
              b'<body><h1>Sign in</h1><form action="/login" method="post"><input name="username">'
              b'<input name="password" type="password"><button type="submit">Sign in</button></form></body>\n</html>\n')
GARBAGE_START = b"<!DOCTYPE html>\n"
# Faults that change how a file body is sent; any other request goes out by sendfile.
BODY_FAULTS = ("drop", "stall", "wrong_bytes", "ignore_range", "short", "garbage_start", "endless")


def file_identity(full):
    st = os.stat(full)
    key = (full, st.st_size, st.st_mtime_ns)
    with OID_LOCK:
        if key in OID_CACHE:
            return OID_CACHE[key]
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(b"blob %d\0" % st.st_size)
    with open(full, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            sha256.update(chunk)
            sha1.update(chunk)
    lfs = full.endswith(LFS_SUFFIXES) or st.st_size >= LFS_MIN_SIZE
    info = {"size": st.st_size, "sha256": sha256.hexdigest(), "git_sha1": sha1.hexdigest(), "lfs": lfs}
    if lfs:
        pointer = "version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (info["sha256"], st.st_size)
        info["pointer_size"] = len(pointer)
        info["oid"] = hashlib.sha1(b"blob %d\0" % len(pointer) + pointer.encode()).hexdigest()
    else:
        info["oid"] = info["git_sha1"]
    with OID_LOCK:
        OID_CACHE[key] = info
    return info


def repo_files(repo, base=None):
    base = base or os.path.join(ROOT, repo)
    out = {}
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        for name in filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, base).replace(os.sep, "/")
            out[rel] = full
    return out


def repo_commit(files):
    h = hashlib.sha1()
    for rel in sorted(files):
        h.update(("%s %s\n" % (rel, file_identity(files[rel])["oid"])).encode())
    return h.hexdigest()


BLOBS = {}  # sha256 -> path, rebuilt by a walk of the root when a lookup misses or is stale


def find_blob(sha):
    full = BLOBS.get(sha)
    if full and os.path.exists(full) and file_identity(full)["sha256"] == sha:
        return full
    found = {}
    for dirpath, _, filenames in os.walk(ROOT):
        for name in filenames:
            if name != "_config.json":
                path = os.path.join(dirpath, name)
                found.setdefault(file_identity(path)["sha256"], path)
    with OID_LOCK:
        BLOBS.clear()
        BLOBS.update(found)
    return found.get(sha)


def lie(fault, rel, info):
    """`info` as a lie_metadata fault reports it for the repo path `rel`."""
    if not fault or fault.get("type") != "lie_metadata" or fault.get("file_contains", "") not in rel:
        return info
    info = dict(info)
    if "size" in fault:
        info["size"] = int(fault["size"])
    if "sha256" in fault:
        info["sha256"] = fault["sha256"]
    if info["lfs"]:  # the pointer blob the Hub would have for such a file
        pointer = "version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (info["sha256"], info["size"])
        info["pointer_size"] = len(pointer)
        info["oid"] = hashlib.sha1(b"blob %d\0" % len(pointer) + pointer.encode()).hexdigest()
    return info


def resolve_target(path):
    """(identity, commit) of the file a /ORG/NAME/resolve/REV/PATH names, or None; no access checks."""
    parts = [p for p in path.split("/") if p]
    if len(parts) < 5 or parts[2] != "resolve":
        return None
    repo, rev, rel = parts[0] + "/" + parts[1], parts[3], "/".join(parts[4:])
    if not os.path.isdir(os.path.join(ROOT, repo)):
        return None
    files = repo_files(repo)
    commit = repo_commit(files)
    if rev not in ("main", commit):
        old = os.path.join(ROOT, "_history", repo, rev)
        if len(rev) != 40 or not os.path.isdir(old):
            return None
        files, commit = repo_files(repo, old), rev
    if rel not in files:
        return None
    return file_identity(files[rel]), commit


def entry(rel, info):
    e = {"type": "file", "oid": info["oid"], "size": info["size"], "path": rel}
    if info["lfs"]:
        e["lfs"] = {"oid": info["sha256"], "size": info["size"], "pointerSize": info["pointer_size"]}
    return e


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    listener = "hub"

    def log_message(self, fmt, *args):  # quiet: the JSONL log is the record
        pass

    def send_header(self, keyword, value):
        # `hide_headers` (config): response headers this listener leaves out, as a proxy that
        # does not pass the Hub's own headers on would.
        hidden = getattr(self, "hidden", ())
        if keyword.lower() in hidden:
            return
        super().send_header(keyword, value)

    def record(self, status, sent):
        if not LOG_PATH:
            return
        line = {"listener": self.listener, "method": self.command, "path": self.path, "status": status,
                "auth": "Authorization" in self.headers, "range": self.headers.get("Range"),
                "bytes": sent, "time": time.time()}
        fault = getattr(self, "fault", None)
        if fault:
            line["fault"] = fault.get("type", "status")
        line = json.dumps(line, sort_keys=True)
        with LOG_LOCK, open(LOG_PATH, "a") as f:
            f.write(line + "\n")

    def reply(self, status, headers=None, body=b"", head=False):
        # Logged before the reply goes out, so a client that has its answer finds it in the log.
        self.record(status, 0 if head else len(body))
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def error(self, status, code=None, message="", extra=None, head=False):
        headers = {"Content-Type": "application/json"}
        if code:
            headers["X-Error-Code"] = code
        if message:
            headers["X-Error-Message"] = message
        headers["X-Request-Id"] = "Root=fake-%d" % int(time.time() * 1000)
        headers.update(extra or {})
        self.reply(status, headers, json.dumps({"error": message or "error"}).encode(), head)

    # -- dispatch ---------------------------------------------------------------------------

    def do_HEAD(self):
        self.dispatch(head=True)

    def do_GET(self):
        self.dispatch(head=False)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        self.dispatch(head=False)

    def dispatch(self, head):
        cfg = load_config()
        self.hidden = {h.lower() for h in cfg.get("hide_headers", {}).get(self.listener, [])}
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        query = urllib.parse.parse_qs(url.query)
        fault = None
        if "hop" in query:  # a later hop of a redirect chain keeps going without using the fault's count
            fault = looping_fault(cfg, self.listener, self.command, path)
        if fault is None:
            match = re.match(r"bytes=(\d+)-", self.headers.get("Range") or "")
            fault = take_fault(cfg, self.listener, self.command, path, int(match.group(1)) if match else None, self.headers)
        self.fault = fault
        ftype = fault.get("type", "status") if fault else None
        if ftype == "status":
            return self.error(fault.get("status", 500), message="injected fault", extra=fault.get("headers"), head=head)
        try:
            if ftype == "redirect":
                return self.fault_redirect(fault, path, head)
            if ftype == "redirect_loop":
                return self.fault_redirect_loop(fault, url, query, head)
            if ftype == "html":
                return self.reply(200, {"Content-Type": "text/html; charset=utf-8"}, LOGIN_PAGE, head)
            if ftype == "huge_header":  # one response header line of `size` bytes (default 300 KB)
                return self.reply(200, {"X-Filler": "x" * int(fault.get("size", 300000))}, b"", head)
            if self.listener == "cdn" or (cfg.get("lfs_on_hub") and path.startswith("/lfs/")):
                return self.cdn(path, url.query, head)
            return self.hub(cfg, path, url.query, head)
        except (BrokenPipeError, ConnectionResetError):
            pass

    # -- faults that answer for the route --------------------------------------------------

    def fault_redirect(self, fault, path, head):
        location = fault.get("location", "")
        headers = {"Location": location}
        target = resolve_target(path) if self.listener == "hub" else None
        if target:  # looks like the Hub's own redirect of this file to its file host
            info, commit = target
            etag = info["sha256"] if info["lfs"] else info["git_sha1"]
            headers.update({"X-Repo-Commit": commit, "X-Linked-Size": str(info["size"]), "X-Linked-Etag": '"%s"' % etag,
                            "Accept-Ranges": "bytes", "Cache-Control": "no-store"})
        headers.update(fault.get("headers") or {})
        self.reply(fault.get("status", 302), headers, ("Found. Redirecting to %s" % location).encode(), head)

    def fault_redirect_loop(self, fault, url, query, head):
        try:
            hop = int(query.get("hop", ["0"])[0])
        except ValueError:
            hop = 0
        pairs = [(k, v) for k, v in urllib.parse.parse_qsl(url.query, keep_blank_values=True) if k != "hop"]
        pairs.append(("hop", str(hop + 1)))
        base = CDN_URL if self.listener == "cdn" else HUB_URL
        location = "%s%s?%s" % (base, url.path, urllib.parse.urlencode(pairs))
        headers = {"Location": location}
        headers.update(fault.get("headers") or {})
        self.reply(fault.get("status", 302), headers, ("Found. Redirecting to %s" % location).encode(), head)

    # -- access ------------------------------------------------------------------------------

    def token(self):
        auth = self.headers.get("Authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else None

    def check_access(self, cfg, repo, content, head=False):
        """Returns True when the request may proceed; otherwise the error was sent."""
        token = self.token()
        tokens = set(cfg.get("tokens", []))
        if token is not None and token not in tokens:
            self.error(401, message="Invalid credentials in Authorization header", head=head)
            return False
        settings = cfg.get("repos", {}).get(repo, {})
        exists = os.path.isdir(os.path.join(ROOT, repo))
        granted = token is not None and token in settings.get("granted", [])
        if not exists or (settings.get("private") and not granted):
            if token is None:
                self.error(401, message="Invalid username or password.",
                           extra={"WWW-Authenticate": 'Bearer realm="Authentication required", charset="UTF-8"'}, head=head)
            else:
                self.error(404, "RepoNotFound", "Repository not found", head=head)
            return False
        if content and settings.get("gated") and not granted:
            msg = "Access to model %s is restricted. You must have access to it and be authenticated to access it. Please log in." % repo
            self.error(401 if token is None else 403, "GatedRepo", msg, head=head)
            return False
        return True

    def revision(self, repo, rev, head=False):
        files = repo_files(repo)
        commit = repo_commit(files)
        if rev not in ("main", commit):
            old = os.path.join(ROOT, "_history", repo, rev)
            if len(rev) == 40 and os.path.isdir(old):
                return repo_files(repo, old), rev
            self.error(404, "RevisionNotFound", "Invalid rev id: %s" % rev, head=head)
            return None, None
        return files, commit

    # -- hub routes --------------------------------------------------------------------------

    def hub(self, cfg, path, query, head):
        parts = [p for p in path.split("/") if p]
        q = urllib.parse.parse_qs(query)
        if len(parts) >= 4 and parts[0] == "api" and parts[1] == "models":
            repo = parts[2] + "/" + parts[3]
            rest = parts[4:]
            if not self.check_access(cfg, repo, content=False, head=head):
                return
            if not rest or rest[0] == "revision":
                rev = rest[1] if len(rest) > 1 else "main"
                files, commit = self.revision(repo, rev, head)
                if files is None:
                    return
                settings = cfg.get("repos", {}).get(repo, {})
                siblings = []
                for rel in sorted(files):
                    s = {"rfilename": rel}
                    if q.get("blobs") == ["true"]:
                        info = lie(self.fault, rel, file_identity(files[rel]))
                        s.update({"blobId": info["oid"], "size": info["size"]})
                        if info["lfs"]:
                            s["lfs"] = {"sha256": info["sha256"], "size": info["size"], "pointerSize": info["pointer_size"]}
                    siblings.append(s)
                body = {"_id": commit[:24], "id": repo, "modelId": repo, "author": repo.split("/")[0], "sha": commit,
                        "private": bool(settings.get("private")), "gated": settings.get("gated", False),
                        "disabled": False, "tags": [], "siblings": siblings}
                return self.reply(200, {"Content-Type": "application/json"}, json.dumps(body).encode(), head)
            if rest[0] == "tree" and len(rest) >= 2:
                files, commit = self.revision(repo, rest[1], head)
                if files is None:
                    return
                prefix = "/".join(rest[2:])
                names = sorted(f for f in files if not prefix or f.startswith(prefix + "/"))
                recursive = q.get("recursive") == ["true"]
                entries, dirs = [], set()
                for rel in names:
                    sub = rel[len(prefix) + 1:] if prefix else rel
                    if "/" in sub:
                        d = (prefix + "/" if prefix else "") + sub.split("/")[0]
                        if d not in dirs:
                            dirs.add(d)
                            entries.append({"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d})
                        if not recursive:
                            continue
                    entries.append(entry(rel, lie(self.fault, rel, file_identity(files[rel]))))
                entries.sort(key=lambda e: e["path"])
                size = int(q.get("limit", [cfg.get("page_size", 1000)])[0])
                start = int(base64.urlsafe_b64decode(q["cursor"][0]).decode()) if "cursor" in q else 0
                page = entries[start:start + size]
                headers = {"Content-Type": "application/json"}
                if start + size < len(entries):
                    nq = {k: v[0] for k, v in q.items()}
                    nq["cursor"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
                    nq["limit"] = str(size)
                    headers["Link"] = '<%s%s?%s>; rel="next"' % (HUB_URL, urllib.parse.quote(path), urllib.parse.urlencode(nq))
                return self.reply(200, headers, json.dumps(page).encode(), head)
            if rest[0] == "paths-info" and len(rest) == 2 and self.command == "POST":
                files, commit = self.revision(repo, rest[1], head)
                if files is None:
                    return
                form = urllib.parse.parse_qs(getattr(self, "body", b"").decode())
                out = [entry(p, lie(self.fault, p, file_identity(files[p]))) for p in form.get("paths", []) if p in files]
                return self.reply(200, {"Content-Type": "application/json"}, json.dumps(out).encode(), head)
            if rest[0] == "refs":
                files, commit = self.revision(repo, "main", head)
                body = {"branches": [{"name": "main", "ref": "refs/heads/main", "targetCommit": commit}], "tags": [], "converts": []}
                return self.reply(200, {"Content-Type": "application/json"}, json.dumps(body).encode(), head)
            return self.error(404, message="Not found", head=head)
        if len(parts) >= 6 and parts[:3] == ["api", "resolve-cache", "models"]:
            repo = parts[3] + "/" + parts[4]
            commit, rel = parts[5], "/".join(parts[6:])
            if not self.check_access(cfg, repo, content=True, head=head):
                return
            files, current = self.revision(repo, commit, head)
            if files is None:
                return
            if rel not in files:
                return self.error(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": current}, head)
            info = file_identity(files[rel])
            return self.send_file(files[rel], info, {"ETag": '"%s"' % info["git_sha1"], "X-Repo-Commit": current}, head)
        if len(parts) >= 5 and parts[2] == "resolve":
            repo = parts[0] + "/" + parts[1]
            rev, rel = parts[3], "/".join(parts[4:])
            if not self.check_access(cfg, repo, content=True, head=head):
                return
            files, commit = self.revision(repo, rev, head)
            if files is None:
                return
            if rel not in files:
                return self.error(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": commit}, head)
            info = file_identity(files[rel])
            shown = lie(self.fault, rel, info)
            limits = {"RateLimit": '"resolvers";r=2999;t=300', "RateLimit-Policy": '"fixed window";"resolvers";q=3000;w=300'}
            if info["lfs"]:
                expires = int(time.time()) + 3600
                sig = hashlib.sha1(("%s%d" % (info["sha256"], expires)).encode()).hexdigest()
                host = HUB_URL if cfg.get("lfs_on_hub") else CDN_URL
                location = "%s/lfs/%s?Expires=%d&Signature=%s" % (host, info["sha256"], expires, sig)
                body = ("Found. Redirecting to %s" % location).encode()
                headers = {"Location": location, "X-Repo-Commit": commit, "X-Linked-Size": str(shown["size"]),
                           "X-Linked-Etag": '"%s"' % shown["sha256"], "Accept-Ranges": "bytes", "Cache-Control": "no-store"}
                headers.update(limits)
                return self.reply(302, headers, body, head)
            location = "/api/resolve-cache/models/%s/%s/%s?%s=&etag=%s" % (
                repo, commit, urllib.parse.quote(rel), urllib.parse.quote(path, safe=""), urllib.parse.quote('"%s"' % info["git_sha1"]))
            headers = {"Location": location, "X-Repo-Commit": commit, "X-Linked-Etag": '"%s"' % info["git_sha1"],
                       "Accept-Ranges": "bytes"}
            headers.update(limits)
            return self.reply(307, headers, b"Temporary Redirect", head)
        return self.error(404, message="Not found", head=head)

    # -- file host ---------------------------------------------------------------------------

    def cdn(self, path, query, head):
        parts = [p for p in path.split("/") if p]
        q = urllib.parse.parse_qs(query)
        if len(parts) != 2 or parts[0] != "lfs":
            return self.reply(404, {}, b"NoSuchKey", head)
        try:
            expires = int(q.get("Expires", ["0"])[0])
        except ValueError:
            expires = 0
        sha = parts[1]
        # A signed URL as the Hub hands out: an unexpired Expires and the Signature made for it.
        sig = hashlib.sha1(("%s%d" % (sha, expires)).encode()).hexdigest()
        if expires < time.time() or q.get("Signature", [""])[0] != sig:
            return self.reply(403, {"Content-Type": "application/xml"}, b"<Error><Code>AccessDenied</Code></Error>", head)
        full = find_blob(sha)
        if not full:
            return self.reply(404, {}, b"NoSuchKey", head)
        etag = '"%s"' % hashlib.md5(sha.encode()).hexdigest()  # not the sha256, as on the real host
        return self.send_file(full, file_identity(full), {"ETag": etag}, head)

    def send_file(self, full, info, headers, head):
        size = info["size"]
        start, end, status = 0, size - 1, 200
        rng = self.headers.get("Range")
        fault = getattr(self, "fault", None)
        ftype = fault.get("type") if fault else None
        if ftype == "endless":
            return self.send_endless(full, headers, head)
        if ftype == "short":  # the file host's copy is only the first N bytes
            size = min(size, max(0, int(fault.get("size", 0))))
            end = size - 1
        if rng and ftype != "ignore_range":
            parsed = parse_range(rng, size)
            if parsed == "unsatisfiable":
                return self.reply(416, {"Content-Range": "bytes */%d" % size}, b"", head)
            if parsed:
                start, end = parsed
                status = 206
                if ftype == "shift_range":
                    start = min(end, start + int(fault.get("shift", 4096)))
        length = end - start + 1
        h = {"Content-Length": str(length), "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        h.update(headers)
        if status == 206:
            h["Content-Range"] = "bytes %d-%d/%d" % (start, end, size)
        self.send_response(status)
        for k, v in h.items():
            self.send_header(k, v)
        self.end_headers()
        sent = 0
        if not head and ftype not in BODY_FAULTS:
            # Zero-copy for the common case, so the server is not the bottleneck of benchmarks.
            self.wfile.flush()
            # A per-connection cap, as the Hub's CDN has (~40 MB/s): paced in 64 KiB steps.
            rate = float(load_config().get("cdn_rate_per_connection", 0)) if self.listener == "cdn" else 0
            began = time.monotonic()
            with open(full, "rb") as f:
                try:
                    while sent < length:
                        step = min(length - sent, 64 << 10 if rate > 0 else 1 << 30)
                        n = os.sendfile(self.connection.fileno(), f.fileno(), start + sent, step)
                        if n == 0:
                            break
                        sent += n
                        if rate > 0:
                            ahead = sent / rate - (time.monotonic() - began)
                            if ahead > 0:
                                time.sleep(ahead)
                except OSError:  # the client went away (a split range, a cancel): logged all the same
                    pass
            self.record(status, sent)
            return
        if not head:
            limit = fault.get("after_bytes") if fault and ftype in ("drop", "stall") else None
            with open(full, "rb") as f:
                f.seek(start)
                remaining = length
                while remaining > 0:
                    chunk = f.read(min(1 << 20, remaining))
                    if not chunk:
                        break
                    if ftype == "wrong_bytes" and sent == 0:
                        chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                    if ftype == "garbage_start" and sent == 0 and start == 0:
                        chunk = GARBAGE_START[:len(chunk)] + chunk[len(GARBAGE_START):]
                    if limit is not None and sent + len(chunk) > limit:
                        chunk = chunk[:max(0, limit - sent)]
                        self.wfile.write(chunk)
                        sent += len(chunk)
                        self.wfile.flush()
                        if ftype == "stall":
                            time.sleep(fault.get("seconds", 120))
                        self.record(status, sent)
                        self.close_connection = True
                        try:
                            self.connection.shutdown(2)
                        except OSError:
                            pass
                        return
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    remaining -= len(chunk)
        self.record(status, sent)

    def send_endless(self, full, headers, head):
        """200 without a length: the real bytes, then pseudo-random ones until the client leaves."""
        self.close_connection = True
        self.send_response(200)
        h = {"Content-Type": "application/octet-stream"}
        h.update(headers)
        h["Connection"] = "close"
        for k, v in h.items():
            self.send_header(k, v)
        self.end_headers()
        sent = 0
        if head:
            return self.record(200, 0)
        rnd = random.Random(full)
        try:
            with open(full, "rb") as f:
                while True:
                    chunk = f.read(1 << 20)
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    sent += len(chunk)
            while True:
                chunk = rnd.randbytes(1 << 16)
                self.wfile.write(chunk)
                sent += len(chunk)
        except OSError:  # BrokenPipe, ConnectionReset: the client went away, as it must
            pass
        self.record(200, sent)


def parse_range(value, size):
    if not value.startswith("bytes=") or "," in value:
        return None
    spec = value[6:].strip()
    try:
        if spec.startswith("-"):
            k = int(spec[1:])
            return (max(0, size - k), size - 1) if k > 0 else None
        a, _, b = spec.partition("-")
        start = int(a)
        if start >= size:
            return "unsatisfiable"
        end = min(int(b), size - 1) if b else size - 1
        return (start, end) if end >= start else None
    except ValueError:
        return None


class HubHandler(Handler):
    listener = "hub"


class CDNHandler(Handler):
    listener = "cdn"


def main():
    global ROOT, LOG_PATH, HUB_URL, CDN_URL
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--log")
    ap.add_argument("--ready-file")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--cdn-port", type=int, default=0)
    # The defaults give two host names on loopback; a benchmark across a network namespace binds
    # the two hosts to two addresses of its own interface instead.
    ap.add_argument("--host", default="127.0.0.1", help="address the Hub binds to and names itself by")
    ap.add_argument("--cdn-host", default="localhost", help="host name of the file host")
    ap.add_argument("--cdn-bind", default="127.0.0.1", help="address the file host binds to")
    ap.add_argument("--lifetime", type=float, default=3600, help="exit after this many seconds")
    args = ap.parse_args()
    # A parent's worker thread may have blocked signals; its mask is inherited. Unblock them so
    # SIGTERM and SIGINT stop this server.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM, signal.SIGINT])
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    ROOT = os.path.abspath(args.root)
    LOG_PATH = args.log
    hub = ThreadingHTTPServer((args.host, args.port), HubHandler)
    cdn = ThreadingHTTPServer((args.cdn_bind, args.cdn_port), CDNHandler)
    hub.daemon_threads = cdn.daemon_threads = True
    HUB_URL = "http://%s:%d" % (args.host, hub.server_address[1])
    CDN_URL = "http://%s:%d" % (args.cdn_host, cdn.server_address[1])
    for server in (hub, cdn):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    ready = json.dumps({"hub": HUB_URL, "cdn": CDN_URL, "pid": os.getpid()})
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(ready)
        os.rename(tmp, args.ready_file)
    print(ready, flush=True)
    # Bounded: a forgotten server stops by itself.
    deadline = time.time() + args.lifetime
    try:
        while time.time() < deadline:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
