#!/usr/bin/env bash
# test_tokenize_cli.sh - `scalemix encode` / `scalemix decode` through the real binary: exact ids for a
# known text, byte-exact round trips of arbitrary bytes (invalid UTF-8 included), --allow-special, errors.
source "$(dirname "$0")/../lib.sh"
if ! "$SCALEMIX" encode --help >/dev/null 2>&1; then
  fail cli_encode "scalemix encode --help does not answer (core/main.c must dispatch to sm_cmd_encode)"; finish
fi
check_eq encode_known "$(printf 'hello world' | "$SCALEMIX" encode)" "31373 995"
check_eq encode_eot_text "$(printf '<|endoftext|>' | "$SCALEMIX" encode)" "27 91 437 1659 5239 91 29"
check_eq encode_eot_special "$(printf 'hello <|endoftext|>' | "$SCALEMIX" encode --allow-special)" "31373 220 50256"
head -c 200000 /dev/urandom >"$TMP_WS/rand.bin"
"$SCALEMIX" encode <"$TMP_WS/rand.bin" >"$TMP_WS/rand.ids" && "$SCALEMIX" decode <"$TMP_WS/rand.ids" >"$TMP_WS/rand.out"
check round_trip_random_bytes cmp -s "$TMP_WS/rand.bin" "$TMP_WS/rand.out"
cat /usr/share/common-licenses/GPL-3 >"$TMP_WS/gpl" 2>/dev/null || printf 'some text\n' >"$TMP_WS/gpl"
"$SCALEMIX" encode <"$TMP_WS/gpl" | "$SCALEMIX" decode >"$TMP_WS/gpl.out"
check round_trip_text cmp -s "$TMP_WS/gpl" "$TMP_WS/gpl.out"
echo "1 2 99999" | "$SCALEMIX" decode >/dev/null 2>"$TMP_WS/err"; rc=$?
check_eq decode_bad_id_exit "$rc" 1
check decode_bad_id_message grep -q "99999" "$TMP_WS/err"
"$SCALEMIX" encode --nonsense </dev/null >/dev/null 2>&1; check_eq encode_usage_exit "$?" 2
"$SCALEMIX" encode --vocab /nonexistent.bpe </dev/null >/dev/null 2>&1; check_eq encode_missing_vocab_exit "$?" 1
finish
