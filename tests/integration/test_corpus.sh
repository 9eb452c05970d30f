#!/usr/bin/env bash
# test_corpus.sh - `make corpus` on a small cap (CORPUS_CAP_MB=1) into a temporary directory, sharing the
# download cache with the real build (build/corpus-cache): every domain present, every line a JSON
# object with a non-empty "text", the manifest's sizes, counts and sha256s true, the cap kept, a second
# run a verified no-op, a damaged file detected and rebuilt to the same bytes. Cold cache: a few minutes.
source "$(dirname "$0")/../lib.sh"

CACHE=${SM_CORPUS_CACHE:-$SM_ROOT/build/corpus-cache}
OUT="$TMP_WS/corpus"
DOMAINS="code encyclopedia books tex qa web docs legal"
corpus() { make -s --no-print-directory -C "$SM_ROOT" corpus CORPUS_DIR="$OUT" CORPUS_CACHE="$CACHE" CORPUS_CAP_MB=1 "$@"; }

if ! command -v python3 >/dev/null || ! command -v dpkg-deb >/dev/null; then
  skip corpus "needs python3 and dpkg-deb (Debian)"; finish
fi

corpus >"$TMP_WS/run1.log" 2>&1
rc=$?
check_eq "first build exits 0" "$rc" 0
[ "$rc" -eq 0 ] || { tail -20 "$TMP_WS/run1.log"; finish; }
grep -q "corpus: built" "$TMP_WS/run1.log" && pass "first build reports what it built" || fail "first build log" "$(tail -3 "$TMP_WS/run1.log")"

for d in $DOMAINS; do
  n=$(find "$OUT/$d" -name '*.jsonl' -size +0 2>/dev/null | wc -l)
  [ "$n" -ge 1 ] && pass "domain $d has $n non-empty files" || fail "domain $d" "no .jsonl files in $OUT/$d"
done

# Every line: valid UTF-8 JSON object with a non-empty string "text"; the manifest agrees with the files.
python3 - "$OUT" $DOMAINS >"$TMP_WS/check.log" 2>&1 <<'EOF'
import hashlib, json, os, sys
out, domains = sys.argv[1], sys.argv[2:]
bad = 0
def fail(msg):
    global bad
    bad += 1
    print("FAIL: " + msg)
rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(out, "MANIFEST.tsv"), encoding="utf-8")]
if rows[0] != ["domain", "file", "bytes", "text_bytes", "documents", "sha256", "sources"]:
    fail("manifest header %r" % rows[0])
rows = rows[1:]
listed = {r[1] for r in rows}
on_disk = {os.path.relpath(os.path.join(dp, f), out) for dp, _, fs in os.walk(out) for f in fs if f.endswith(".jsonl")}
if listed != on_disk:
    fail("manifest lists %s, disk has %s" % (sorted(listed ^ on_disk), ""))
per_domain = {}
for dom, rel, nbytes, tbytes, ndocs, digest, sources in rows:
    data = open(os.path.join(out, rel), "rb").read()
    if hashlib.sha256(data).hexdigest() != digest:
        fail("%s: sha256 differs from the manifest" % rel)
    if len(data) != int(nbytes):
        fail("%s: %d bytes, manifest says %s" % (rel, len(data), nbytes))
    if not sources or ("=" not in sources and "@" not in sources):
        fail("%s: no pinned source packages in the manifest (%r)" % (rel, sources))
    lines = data.split(b"\n")
    if lines[-1] != b"":
        fail("%s: does not end with a newline" % rel)
    lines = lines[:-1]
    if len(lines) != int(ndocs):
        fail("%s: %d lines, manifest says %s documents" % (rel, len(lines), ndocs))
    text_total = 0
    for i, line in enumerate(lines, 1):
        try:
            obj = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            fail("%s:%d: not UTF-8 JSON: %s" % (rel, i, e))
            continue
        t = obj.get("text") if isinstance(obj, dict) else None
        if not isinstance(t, str) or not t.strip():
            fail("%s:%d: no non-empty text" % (rel, i))
            continue
        text_total += len(t.encode("utf-8"))
    if text_total != int(tbytes):
        fail("%s: %d text bytes, manifest says %s" % (rel, text_total, tbytes))
    per_domain[dom] = per_domain.get(dom, 0) + text_total
for d in domains:
    if per_domain.get(d, 0) > 1000000:
        fail("domain %s: %d text bytes exceed the 1 MB cap" % (d, per_domain[d]))
    if per_domain.get(d, 0) < 100000:
        fail("domain %s: only %d text bytes" % (d, per_domain.get(d, 0)))
print("checked %d files, %d domains" % (len(rows), len(per_domain)))
sys.exit(1 if bad else 0)
EOF
rc=$?
if [ $rc -eq 0 ]; then pass "every line is JSON with text; manifest sizes, counts, sha256s and cap hold"
else fail "corpus content" "$(grep -m5 FAIL "$TMP_WS/check.log" | tr '\n' ';')"; fi

sums() { (cd "$OUT" && find . -name '*.jsonl' -print0 | sort -z | xargs -0 sha256sum; sha256sum MANIFEST.tsv); }
before=$(sums)
stamp_before=$(stat -c %Y "$OUT/.stamp")
corpus >"$TMP_WS/run2.log" 2>&1
check_eq "second build exits 0" "$?" 0
grep -q "nothing to do" "$TMP_WS/run2.log" && pass "second build is a no-op" || fail "second build is a no-op" "$(cat "$TMP_WS/run2.log")"
check_eq "second build leaves the files alone" "$(sums)" "$before"
check_eq "second build leaves the stamp alone" "$(stat -c %Y "$OUT/.stamp")" "$stamp_before"

# A damaged file fails verification: the corpus is rebuilt, byte-identical to the first build.
f=$(find "$OUT/legal" -name '*.jsonl' | sort | head -1)
echo '{"text": "tampered"}' >>"$f"
corpus >"$TMP_WS/run3.log" 2>&1
check_eq "build after damage exits 0" "$?" 0
grep -q "corpus: built" "$TMP_WS/run3.log" && pass "damage is detected and rebuilt" || fail "damage detected" "$(tail -3 "$TMP_WS/run3.log")"
check_eq "rebuild is byte-identical (deterministic)" "$(sums)" "$before"

# Bad arguments fail with a message naming the problem.
out=$(make -s --no-print-directory -C "$SM_ROOT" corpus CORPUS_DIR="$TMP_WS/bad" CORPUS_CACHE="$CACHE" CORPUS_CAP_MB=0 2>&1)
rc=$?
[ $rc -ne 0 ] && [[ "$out" == *"CORPUS_CAP_MB=0 is too small"* ]] && pass "a zero cap is refused with a message" \
  || fail "zero cap refused" "rc=$rc: $out"

# A package that cannot be had is named in the error; a damaged download is named with what to do.
out=$(cd "$SM_ROOT/pipelines/corpus" && python3 -B - "$TMP_WS" 2>&1 <<'EOF'
import sys
import corpus
from corpus_io import CorpusError, deb_files, tgz_files
tmp = sys.argv[1]
try:
    corpus._apt_download(tmp, ["no-such-package-scalemix"])
    print("no error for a missing package")
except CorpusError as e:
    print(e)
open(tmp + "/bad.deb", "wb").write(b"!<arch>\ngarbage")
try:
    list(deb_files(tmp + "/bad.deb", "pari-doc", lambda p: True))
    print("no error for a bad .deb")
except CorpusError as e:
    print(e)
open(tmp + "/bad.tgz", "wb").write(b"garbage")
try:
    tgz_files(tmp + "/bad.tgz", "nlp-corpus", lambda p: True)
    print("no error for a bad tarball")
except CorpusError as e:
    print(e)
EOF
)
[[ "$out" == *"fetch [no-such-package-scalemix]: apt-get download failed"* ]] && pass "a missing Debian package is named" \
  || fail "missing package named" "$out"
[[ "$out" == *"read [pari-doc]: $TMP_WS/bad.deb is not a readable .deb"*"delete it"* ]] && pass "a damaged .deb is named" \
  || fail "damaged .deb named" "$out"
[[ "$out" == *"read [nlp-corpus]: bad npm tarball"* ]] && pass "a damaged npm tarball is named" \
  || fail "damaged tarball named" "$out"
finish
