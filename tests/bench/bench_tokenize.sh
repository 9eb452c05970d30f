#!/usr/bin/env bash
# bench_tokenize.sh - GPT-2 tokenizer throughput: sm_tok (1 and 2 threads) next to the npm tokenizers
# tiktoken (Rust compiled to WebAssembly) and js-tiktoken (pure JavaScript) on the same text, same chunks,
# same run; also checks that all three produce the same ids (token count and FNV-1a of the ids); and, when
# corpus/ exists, the whole tokenize stage at each thread count (identical shards required).
# Prints wall-clock MB/s and MB per CPU-second for each (the latter for shared, loaded machines).
# usage: tests/bench/bench_tokenize.sh   (BUILD=build-x, BENCH_MB=16, BENCH_THREADS=1,2, BENCH_REPEAT=3)
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
export SM_ROOT=$PWD SM_BUILD=$PWD/$BUILD
MB=${BENCH_MB:-16}
THREADS=${BENCH_THREADS:-1,$(nproc)}
REPEAT=${BENCH_REPEAT:-3}
bin=$BUILD/bench/bench_tokenize
[ -x "$bin" ] || { echo "bench_tokenize.sh: $bin missing; run make BUILD=$BUILD $bin"; exit 2; }
tmp=$(mktemp -d /tmp/sm-bench-tok.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# The text: documents from corpus/<domain>/*.jsonl (field "text") when the demo corpus exists, else real
# text found on this machine (licenses, Debian changelogs and docs, the Python standard library); valid
# UTF-8, documents separated by newlines, at most $MB MB.
python3 - "$tmp/text.txt" "$MB" <<'PY'
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
PY
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
"$bin" --threads "$THREADS" --repeat "$REPEAT" "$tmp/text.txt" | tee "$tmp/c.out"
if [ -d corpus ] && [ -f "$BUILD/plugins/tokenize.so" ]; then
  echo "whole tokenize stage on corpus/ (read, decompress, parse JSON, hash, dedup, split, tokenize, write shards):"
  "$bin" --stage corpus --threads "$THREADS"
fi
ours=$(sed -n 's/.*ids fnv1a32 \([0-9a-f]*\).*/\1/p' "$tmp/c.out" | head -1)
ours_tok=$(sed -n 's/.*; \([0-9]*\) tokens; ids.*/\1/p' "$tmp/c.out" | head -1)
one=$(sed -n 's/^sm_tok threads=1: \([0-9.]*\) MB\/s.*/\1/p' "$tmp/c.out")
one_cpu=$(sed -n 's/^sm_tok threads=1: .*; \([0-9.]*\) MB per CPU-second.*/\1/p' "$tmp/c.out")
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "JavaScript tokenizers: not measured (node/npm not installed)"; exit 0
fi
if ! (cd "$tmp" && npm install --silent --no-audit --no-fund --no-save tiktoken@1.0.22 js-tiktoken@1.0.21 >npm.log 2>&1); then
  echo "JavaScript tokenizers: not measured (npm install failed: $(tail -1 "$tmp/npm.log"))"; exit 0
fi
echo "node $(node --version)"
node tests/bench/bench_tokenize.js "$tmp" "$tmp/text.txt" "$REPEAT" | tee "$tmp/js.out"
best=0 best_cpu=0
while read -r line; do
  name=${line%% *}
  mbs=$(echo "$line" | sed -n 's/.*threads=1: \([0-9.]*\) MB\/s.*/\1/p')
  fp=$(echo "$line" | sed -n 's/.*ids fnv1a32 \([0-9a-f]*\).*/\1/p')
  ntok=$(echo "$line" | sed -n 's/.*, \([0-9]*\) tokens, best.*/\1/p')
  if [ "$fp" = "$ours" ] && [ "$ntok" = "$ours_tok" ]; then echo "  $name: same ids as sm_tok ($ntok tokens)"
  else echo "  $name: DIFFERENT ids from sm_tok ($ntok tokens, fnv $fp vs $ntok/$ours_tok, $ours)"; fi
  cpu=$(echo "$line" | sed -n 's/.*; \([0-9.]*\) MB per CPU-second.*/\1/p')
  best=$(python3 -c "print(max($best, $mbs))")
  best_cpu=$(python3 -c "print(max($best_cpu, $cpu))")
done <"$tmp/js.out"
python3 -c "print(f'sm_tok 1 thread / best JavaScript tokenizer: {$one / $best:.2f}x wall-clock MB/s, {$one_cpu / $best_cpu:.2f}x MB per CPU-second (target >= 2x)')"
echo "load average during the run: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs (wall-clock figures are only comparable on an idle machine)"
