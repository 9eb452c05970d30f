#!/usr/bin/env python3
"""bench_text.py OUT MAX_MB - the benchmark's text: documents from corpus/<domain>/*.jsonl (field "text")
when the demo corpus exists, else real text found on this machine (licenses, Debian changelogs and docs,
the Python standard library). Writes valid UTF-8, documents separated by newlines, at most MAX_MB MB,
and prints where it came from."""
import glob, gzip, json, os, sys

out, cap = sys.argv[1], int(float(sys.argv[2]) * 1e6)
root = os.environ.get("SM_ROOT", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
parts, total, sources = [], 0, []

def add(text, src):
    global total
    if total >= cap or not text:
        return
    b = text.encode("utf-8")
    if total + len(b) > cap:
        b = b[: cap - total].decode("utf-8", "ignore").encode("utf-8")
    parts.append(b)
    parts.append(b"\n")
    total += len(b) + 1
    if src not in sources:
        sources.append(src)

corpus = sorted(glob.glob(os.path.join(root, "corpus", "*", "*.jsonl")))
if corpus:
    # round-robin over domains so every domain is represented
    per_domain = {}
    for f in corpus:
        per_domain.setdefault(os.path.basename(os.path.dirname(f)), []).append(f)
    readers = []
    for d in sorted(per_domain):
        def gen(files=per_domain[d]):
            for f in files:
                with open(f, encoding="utf-8", errors="strict") as fh:
                    for line in fh:
                        try:
                            yield json.loads(line)["text"]
                        except Exception:
                            continue
        readers.append((d, gen()))
    while readers and total < cap:
        for d, g in list(readers):
            t = next(g, None)
            if t is None:
                readers.remove((d, g))
            else:
                add(t, "corpus/" + d)
else:
    files = sorted(glob.glob("/usr/share/common-licenses/*"))
    files += sorted(glob.glob("/usr/share/doc/*/changelog.Debian.gz"))[:400]
    files += sorted(glob.glob("/usr/share/doc/**/*.txt", recursive=True))
    files += sorted(glob.glob("/usr/lib/python3*/**/*.py", recursive=True))
    # interleave kinds so a cap still gives prose, changelogs and code
    kinds = [[f for f in files if f.startswith("/usr/share/common-licenses")],
             [f for f in files if f.endswith(".gz")],
             [f for f in files if f.endswith(".txt")],
             [f for f in files if f.endswith(".py")]]
    i = 0
    while total < cap and any(kinds):
        k = kinds[i % 4]
        i += 1
        if not k:
            continue
        f = k.pop(0)
        try:
            if os.path.isdir(f):
                continue
            raw = gzip.open(f).read() if f.endswith(".gz") else open(f, "rb").read()
            add(raw.decode("utf-8"), os.path.dirname(f) if not f.startswith("/usr/lib/python") else "python stdlib")
        except (UnicodeDecodeError, OSError, EOFError):
            continue
with open(out, "wb") as fh:
    fh.write(b"".join(parts))
kind = "demo corpus" if corpus else "local text (no corpus/ directory)"
print(f"bench text: {total / 1e6:.2f} MB from {kind}: {len(sources)} sources, e.g. {', '.join(sources[:4])}")
