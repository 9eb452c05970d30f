#!/usr/bin/env bash
# bench_tokenize.sh - GPT-2 tokenizer throughput: sm_tok (1 and 2 threads) next to the npm tokenizers
# tiktoken (Rust compiled to WebAssembly) and js-tiktoken (pure JavaScript) on the same text, same chunks,
# same run; also checks that all three produce the same ids (token count and FNV-1a of the ids).
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
python3 tests/bench/bench_text.py "$tmp/text.txt" "$MB"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
"$bin" --threads "$THREADS" --repeat "$REPEAT" "$tmp/text.txt" | tee "$tmp/c.out"
ours=$(sed -n 's/.*ids fnv1a32 \([0-9a-f]*\).*/\1/p' "$tmp/c.out" | head -1)
ours_tok=$(sed -n 's/.*; \([0-9]*\) tokens; ids.*/\1/p' "$tmp/c.out" | head -1)
one=$(sed -n 's/^sm_tok threads=1: \([0-9.]*\) MB\/s.*/\1/p' "$tmp/c.out")
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "JavaScript tokenizers: not measured (node/npm not installed)"; exit 0
fi
if ! (cd "$tmp" && npm install --silent --no-audit --no-fund --no-save tiktoken@1.0.22 js-tiktoken@1.0.21 >npm.log 2>&1); then
  echo "JavaScript tokenizers: not measured (npm install failed: $(tail -1 "$tmp/npm.log"))"; exit 0
fi
echo "node $(node --version)"
node tests/bench/bench_tokenize.js "$tmp" "$tmp/text.txt" "$REPEAT" | tee "$tmp/js.out"
best=0
while read -r line; do
  name=${line%% *}
  mbs=$(echo "$line" | sed -n 's/.*threads=1: \([0-9.]*\) MB\/s.*/\1/p')
  fp=$(echo "$line" | sed -n 's/.*ids fnv1a32 \([0-9a-f]*\).*/\1/p')
  ntok=$(echo "$line" | sed -n 's/.*, \([0-9]*\) tokens, best.*/\1/p')
  if [ "$fp" = "$ours" ] && [ "$ntok" = "$ours_tok" ]; then echo "  $name: same ids as sm_tok ($ntok tokens)"
  else echo "  $name: DIFFERENT ids from sm_tok ($ntok tokens, fnv $fp vs $ntok/$ours_tok, $ours)"; fi
  best=$(python3 -c "print(max($best, $mbs))")
done <"$tmp/js.out"
python3 -c "print(f'sm_tok 1 thread / best JavaScript tokenizer: {$one / $best:.2f}x (target >= 2x)')"
