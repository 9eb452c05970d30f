#!/usr/bin/env bash
# test_tokenize_tiktoken.sh - sm_tok against an independent implementation: npm's tiktoken (OpenAI's Rust
# tokenizer compiled to WebAssembly), installed into a temporary directory, on real text found on this
# machine and on generated text dense in the pre-tokenizer's hard cases (every White_Space character,
# U+FEFF / U+200B, contractions, scripts, numbers, emoji, combining marks). Both sides tokenize the same
# chunks; the token counts and FNV-1a hashes of all ids must match. js-tiktoken is checked on the real
# text only (JavaScript's \s differs from White_Space on U+0085 and U+FEFF). SKIPs without node/npm.
source "$(dirname "$0")/../lib.sh"
bench="$SM_BUILD/bench/bench_tokenize"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  skip tiktoken_real_text "node/npm not installed"; skip tiktoken_hard_cases "node/npm not installed"; finish
fi
[ -x "$bench" ] || { fail tiktoken_build "$bench missing (make test-build)"; finish; }
if ! (cd "$TMP_WS" && npm install --silent --no-audit --no-fund --no-save tiktoken@1.0.22 js-tiktoken@1.0.21 >npm.log 2>&1); then
  skip tiktoken_real_text "npm install tiktoken failed (offline?): $(tail -1 "$TMP_WS/npm.log")"
  skip tiktoken_hard_cases "npm install failed"; finish
fi
python3 - "$TMP_WS/real.txt" "$TMP_WS/hard.txt" <<'PY'
import glob, random, sys
real, hard = sys.argv[1], sys.argv[2]
parts, total = [], 0
for f in sorted(glob.glob("/usr/share/common-licenses/*")) + sorted(glob.glob("/usr/lib/python3*/*.py"))[:60]:
    try:
        parts.append(open(f, encoding="utf-8").read())
    except (UnicodeDecodeError, OSError):
        continue
    total += len(parts[-1])
    if total > 3_000_000:
        break
open(real, "w", encoding="utf-8").write("\n".join(parts))
rnd = random.Random(20260524)
spaces = [" ", "\t", "\n", "\r", "\x0b", "\x0c", "\x85", "\xa0", "\u1680", "\u2000", "\u2005", "\u200a", "\u2028",
          "\u2029", "\u202f", "\u205f", "\u3000"]
others = ["\u200b", "\ufeff", "\u180e", "\u200d", "!", "?", ".", ",", "-", "_", "(", ")", "\"", "#", "@", "$", "\u2014",
          "\u201c", "\u00bf", "\u0301", "\u20ac", "\U0001F600", "\U0001F44D\U0001F3FD", "\u2764\ufe0f"]
letters = ["a", "Z", "hello", "World", "\u00e9t\u00e9", "\u0416\u0438\u0437\u043d\u044c", "\u03bb\u03cc\u03b3\u03bf\u03c2",
           "\u65e5\u672c\u8a9e", "\ud55c\uad6d\uc5b4", "\u0639\u0631\u0628\u064a", "\u0939\u093f\u0928\u094d\u0926\u0940",
           "na\u00efve", "\u00df", "\u01c5"]
numbers = ["0", "42", "2024", "\u0663\u0664", "\u2167", "\u00bd", "\u00b2", "\u2460", "\uff11\uff12"]
contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'", "''", "n't"]
pools = [spaces] * 3 + [others, letters, letters, numbers, contractions]
out = []
for _ in range(60000):
    pool = rnd.choice(pools)
    out.append(rnd.choice(pool) * (rnd.randint(1, 3) if pool is spaces else 1))
open(hard, "w", encoding="utf-8").write("".join(out))
PY
compare() { # name file tokenizers...
  local name=$1 file=$2; shift 2
  local ours js
  ours=$("$bench" --threads 1 --repeat 1 "$file" | sed -n 's/.*; \([0-9]*\) tokens; ids fnv1a32 \([0-9a-f]*\).*/\1 \2/p')
  node "$SM_ROOT/tests/bench/bench_tokenize.js" "$TMP_WS" "$file" 1 >"$TMP_WS/js.out" || { fail "$name" "node failed"; return; }
  for t in "$@"; do
    js=$(grep "^$t " "$TMP_WS/js.out" | sed -n 's/.*, \([0-9]*\) tokens, best.*ids fnv1a32 \([0-9a-f]*\).*/\1 \2/p')
    check_eq "${name}_$t" "$js" "$ours"
  done
}
compare real_text "$TMP_WS/real.txt" tiktoken js-tiktoken
compare hard_cases "$TMP_WS/hard.txt" tiktoken
finish
