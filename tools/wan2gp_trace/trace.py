#!/usr/bin/env python3
"""Ask a Wan2GP checkout's own code which files it downloads when it loads each
model under each of wgpm's 12 settings, and write the answer as a wgpm trace
(format_version 1; Sources/Catalog/Knowledge.swift, WanTrace).

usage: trace.py CHECKOUT --out FILE [--models ID,ID] [--mmgp DIR] [--commit SHA]

How: the checkout is copied into a temporary app root (the checkout itself is
never written), its wgp.py is imported there with the heavy modules (torch,
gradio, transformers, ...) replaced by permissive stand-ins (stubs.py), and
for every model and setting its real `load_models` runs until the family
handler would build the model. Everything that would reach the network goes
through stand-ins that record the request and leave an empty file where the
download would have landed, so Wan2GP's own "already there?" checks behave as
on a real disk; the files that appear below the app root are the answer.
Sockets are closed to the process: nothing is downloaded.

`--mmgp DIR`: a `pip install --no-deps --target DIR mmgp==<pin>` of the mmgp
version the checkout pins, used instead of a stand-in when it imports without
torch (it usually does not; the stand-in is then used and noted in the trace).
"""
import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import traceback
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fingerprint as fingerprint_mod  # noqa: E402
import stubs  # noqa: E402

SETTINGS = [f"{q}-{t}-{d}" for q in ("int8", "fp8", "bf16") for t in ("int8", "bf16") for d in ("bf16", "fp16")]
SKIP_COPY = {".git", "ckpts", "loras", "venv", ".venv", "env", "outputs", "__pycache__", "node_modules"}


class StopTrace(Exception):
    """Raised where the handler would build the model: every download is done by then."""


class Recorder:
    """Stands in for the network: each request leaves an empty file where its bytes would land."""

    def __init__(self, root):
        self.root = root
        self.urls = {}  # absolute path -> url

    def _touch(self, path, url):
        path = os.path.abspath(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not os.path.exists(path):
            open(path, "wb").close()
        self.urls[path] = url
        return path

    def hf_hub_download(self, repo_id=None, filename=None, local_dir=None, subfolder=None, **kw):
        rel = f"{subfolder}/{filename}" if subfolder else filename
        url = f"https://huggingface.co/{repo_id}/resolve/main/{rel}"
        base = local_dir if local_dir is not None else os.path.join(self.root, ".hf-cache", repo_id)
        return self._touch(os.path.join(base, rel), url)

    def snapshot_download(self, repo_id=None, allow_patterns=None, local_dir=None, **kw):
        # A folder download: the listing is the Hub's, not the checkout's; record the folder.
        patterns = allow_patterns if isinstance(allow_patterns, list) else [allow_patterns or "*"]
        for p in patterns:
            folder = p.rstrip("*").rstrip("/")
            marker = os.path.join(local_dir or self.root, folder, ".snapshot")
            self._touch(marker, f"https://huggingface.co/{repo_id}/tree/main/{folder}")
        return local_dir

    def urlretrieve(self, url, filename=None, *a, **kw):
        self._touch(filename, url)
        return filename, None


def no_network(*a, **k):
    raise OSError("wgpm trace: the network is closed to Wan2GP's code while it is traced")


def mmgp_pin(app):
    """`target_mmgp_version = "x"` in wgp.py (or mmgp==x in requirements.txt)."""
    import re
    for name, pattern in (("wgp.py", r'^target_mmgp_version\s*=\s*["\']([^"\']+)'), ("requirements.txt", r"^mmgp==(\S+)")):
        try:
            m = re.search(pattern, open(os.path.join(app, name)).read(), re.M)
        except OSError:
            continue
        if m:
            return m.group(1)
    return None


def mmgp_folder_version(folder):
    """The version of a `pip --target` install: its dist-info folder's name."""
    for name in os.listdir(folder or "."):
        if name.startswith("mmgp-") and name.endswith(".dist-info"):
            return name[len("mmgp-"):-len(".dist-info")]
    return None


def answer_versions(pin):
    """wgp.py checks installed versions (mmgp's above all): answer as the pinned install would."""
    import importlib.metadata as md
    real = md.version

    def version(name):
        if name.lower() == "mmgp" and pin:
            return pin
        try:
            return real(name)
        except md.PackageNotFoundError:
            return "99.0.0"
    md.version = version


def install_recorders(rec):
    hub = stubs.Stub("huggingface_hub")
    hub.hf_hub_download = rec.hf_hub_download
    hub.snapshot_download = rec.snapshot_download
    sys.modules["huggingface_hub"] = hub
    import urllib.request
    urllib.request.urlretrieve = rec.urlretrieve
    socket.socket.connect = no_network
    socket.socket.connect_ex = no_network
    socket.create_connection = no_network
    socket.getaddrinfo = no_network


def copy_checkout(src, dst):
    def ignore(folder, names):
        if os.path.abspath(folder) == os.path.abspath(src):
            return [n for n in names if n in SKIP_COPY or n.startswith("loras")]
        return [n for n in names if n == "__pycache__"]
    shutil.copytree(src, dst, symlinks=True, ignore=ignore)
    # The LoRA folders as folders only (a user's may hold gigabytes): Wan2GP moves a LoRA it
    # downloads into its folder, and where the folder is missing the move makes a file of
    # that name instead.
    for name in os.listdir(src):
        top = os.path.join(src, name)
        if name.startswith("loras") and os.path.isdir(top) and not os.path.islink(top):
            for dirpath, dirnames, _ in os.walk(top):
                os.makedirs(os.path.join(dst, os.path.relpath(dirpath, src)), exist_ok=True)


def drop_missing_handlers(app):
    """A commit may list a family handler whose folder it does not contain (18f165e0 names
    models.longcat before models/longcat was committed: that Wan2GP cannot start). The copy's
    list loses those entries so the other families can be traced; their models end in errors."""
    import re
    path = os.path.join(app, "wgp.py")
    text = open(path, encoding="utf-8").read()
    m = re.search(r"^family_handlers\s*=\s*\[([^\]]*)\]", text, re.M)
    if not m:
        return []
    names = re.findall(r"[\"']([\w.]+)[\"']", m.group(1))
    missing = [n for n in names if not os.path.isfile(os.path.join(app, *n.split(".")) + ".py")]
    if missing:
        kept = ", ".join(f'"{n}"' for n in names if n not in missing)
        text = text[:m.start()] + f"family_handlers = [{kept}]" + text[m.end():]
        open(path, "w", encoding="utf-8").write(text)
    return missing


def existing_files(root):
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in (".git", "__pycache__")]
        for f in filenames:
            out.add(os.path.join(dirpath, f))
    return out


def url_for(path, rec):
    if path in rec.urls:
        return rec.urls[path]
    # download_file fetches into a temporary folder and moves the file up: match by name.
    name = os.path.basename(path)
    moved = [u for p, u in rec.urls.items() if os.path.basename(p) == name and not os.path.exists(p)]
    return moved[0] if len(moved) == 1 else None


def set_setting(wgp, index):
    q, t, d = SETTINGS[index].split("-")
    wgp.transformer_quantization = q
    wgp.text_encoder_quantization = t
    wgp.transformer_dtype_policy = d
    sc = getattr(wgp, "server_config", None)
    if isinstance(sc, dict):
        sc.update(transformer_quantization=q, text_encoder_quantization=t, transformer_dtype_policy=d)


def handler_of(wgp, model_type):
    base = wgp.get_base_model_type(model_type)
    return wgp.model_types_handlers[base]


def trace_cell(wgp, app, rec, model_type, baseline):
    """The files loading `model_type` makes appear below the app root, with their URLs."""
    for p in existing_files(app) - baseline:
        os.remove(p)
    rec.urls.clear()
    handler = handler_of(wgp, model_type)
    original = handler.load_model

    def stop(*a, **k):
        raise StopTrace()
    handler.load_model = stop
    try:
        wgp.load_models(model_type)
    except StopTrace:
        pass
    finally:
        handler.load_model = original
    files = {}
    for p in sorted(existing_files(app) - baseline):
        rel = os.path.relpath(p, app).replace(os.sep, "/")
        if rel.startswith(".hf-cache/"):
            continue
        url = url_for(p, rec)
        if url is None:
            raise RuntimeError(f"{rel} appeared without a download that explains it")
        files[rel] = url
    return files


def lora_dir_of(wgp, app, model_type):
    try:
        d = wgp.get_lora_dir(model_type)
    except Exception:
        return None
    if not d:
        return None
    d = os.path.normpath(os.path.join(app, d)) if not os.path.isabs(d) else os.path.normpath(d)
    return os.path.relpath(d, app).replace(os.sep, "/")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkout")
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", help="comma-separated model ids (default: every one)")
    ap.add_argument("--mmgp", help="folder holding the pinned mmgp (pip --target)")
    ap.add_argument("--commit", help="the commit, for a checkout without .git (an extracted tree)")
    args = ap.parse_args()
    args.out = os.path.abspath(args.out)  # the trace runs in a copy of the checkout, elsewhere

    checkout = os.path.abspath(args.checkout)
    if args.mmgp:
        args.mmgp = os.path.abspath(args.mmgp)  # before the chdir below
    fp, _ = fingerprint_mod.fingerprint(checkout)
    work = tempfile.mkdtemp(prefix="wgpm-trace-")
    app = os.path.join(work, "app")
    try:
        copy_checkout(checkout, app)
        missing_handlers = drop_missing_handlers(app)
        for n in missing_handlers:
            print(f"trace.py: warning: wgp.py lists {n}, which this checkout does not contain; its models cannot be traced",
                  file=sys.stderr)
        os.chdir(app)
        sys.path.insert(0, app)
        sys.argv = ["wgp.py"]
        rec = Recorder(app)
        if args.mmgp:
            sys.path.insert(0, os.path.abspath(args.mmgp))
        stubs.install()
        pin = mmgp_pin(app)
        try:
            # The real mmgp (with torch a stand-in): its quantization tokens pick the files.
            import mmgp.offload  # noqa: F401
            from importlib.metadata import version as real_version, PackageNotFoundError
            try:
                have = real_version("mmgp")
            except PackageNotFoundError:
                have = getattr(sys.modules["mmgp"], "__version__", None) or mmgp_folder_version(args.mmgp)
        except Exception as e:
            print(f"trace.py: mmgp could not be imported ({type(e).__name__}: {e}). This Wan2GP pins mmgp=={pin}: "
                  f"install it (pip install --no-deps --target DIR mmgp=={pin}) and pass --mmgp DIR", file=sys.stderr)
            return 2
        mmgp_note = f"{have}" if have == pin else f"{have}, not the pinned {pin}"
        if have != pin:
            print(f"trace.py: warning: mmgp {have} is installed, this Wan2GP pins {pin}", file=sys.stderr)
        install_recorders(rec)
        stubs.preset()
        answer_versions(pin)
        import io
        real_stdout = sys.stdout
        sys.stdout = io.StringIO()  # wgp.py prints a lot at import
        try:
            import wgp
        finally:
            sys.stdout = real_stdout
        stubs.after_import(wgp)
        version = getattr(wgp, "WanGP_version", None)
        ids = sorted(wgp.models_def.keys()) if not args.models else args.models.split(",")
        baseline = existing_files(app)
        models, errors = {}, {}
        for n, model_type in enumerate(ids, 1):
            per_file = {}
            try:
                for index in range(12):
                    set_setting(wgp, index)
                    sys.stdout = io.StringIO()
                    try:
                        files = trace_cell(wgp, app, rec, model_type, baseline)
                    finally:
                        sys.stdout = real_stdout
                    for rel, url in files.items():
                        entry = per_file.setdefault(rel, {"url": url, "settings": []})
                        if entry["url"] != url:
                            raise RuntimeError(f"{rel} comes from two URLs: {entry['url']} and {url}")
                        entry["settings"].append(index)
                arch = wgp.get_model_def(model_type).get("architecture") or wgp.get_base_model_type(model_type)
                for entry in per_file.values():
                    if len(entry["settings"]) == 12:
                        del entry["settings"]
                models[model_type] = {"architecture": arch, "lora_dir": lora_dir_of(wgp, app, model_type), "files": per_file}
            except Exception as e:
                errors[model_type] = f"{type(e).__name__}: {e}"[:500]
                if missing_handlers:
                    errors[model_type] += f" (this checkout lacks {', '.join(missing_handlers)})"
                if os.environ.get("WGPM_TRACE_DEBUG"):
                    traceback.print_exc()
            print(f"  [{n}/{len(ids)}] {model_type}: {len(per_file)} files" + (f" (error: {errors[model_type][:100]})" if model_type in errors else ""),
                  file=sys.stderr)
        out = {"format_version": 1, "wan2gp_commit": args.commit or git_head(checkout), "wangp_version": version, "fingerprint": fp,
               "mmgp": mmgp_note, "settings": SETTINGS,
               "models": models, "errors": errors}
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(out, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, args.out)
        print(f"traced {len(models)} models, {len(errors)} errors -> {args.out}", file=sys.stderr)
        return 0 if models else 1
    finally:
        os.chdir("/")
        shutil.rmtree(work, ignore_errors=True)


def git_head(checkout):
    sys.path.insert(0, HERE)
    head = os.path.join(checkout, ".git", "HEAD")
    try:
        text = open(head).read().strip()
    except OSError:
        return None
    if len(text) == 40:
        return text
    if text.startswith("ref: "):
        ref = text[5:]
        try:
            return open(os.path.join(checkout, ".git", ref)).read().strip()
        except OSError:
            for line in open(os.path.join(checkout, ".git", "packed-refs")).read().splitlines() if os.path.exists(os.path.join(checkout, ".git", "packed-refs")) else []:
                parts = line.split(" ")
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
    return None


if __name__ == "__main__":
    sys.exit(main())
