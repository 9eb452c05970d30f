#!/usr/bin/env bash
# `scalemix eval` end to end: a checkpoint written by the model library, a shard written by hand, the
# printed loss equal to the independent numpy forward (when /usr/bin/python3 has numpy), and clear
# failures (exit 1 for bad files, 2 for usage).
source "$(dirname "$0")/../lib.sh"
[ -x "$SCALEMIX" ] || { fail eval_binary "no $SCALEMIX (build first)"; finish; }
W=$TMP_WS
PY=""
for p in python3 /usr/bin/python3; do "$p" -c 'import numpy' 2>/dev/null && { PY=$p; break; }; done
if [ -z "$PY" ]; then skip eval_matches_numpy "python3-numpy is not installed"; finish; fi
# a small random v3 checkpoint and a shard (numpy writes both; formats from gpt2-formats.md)
"$PY" - "$W" <<'PYEOF'
import sys, numpy as np
w = sys.argv[1]
rng = np.random.default_rng(3)
maxT, V, L, NH, C, Vp = 64, 500, 2, 2, 32, 512
n = Vp*C + maxT*C + L*(C + C + 3*C*C + 3*C + C*C + C + C + C + 4*C*C + 4*C + 4*C*C + C) + 2*C
h = np.zeros(256, dtype='<i4'); h[:8] = [20240326, 3, maxT, V, L, NH, C, Vp]
p = (rng.standard_normal(n) * 0.05).astype('<f4')
open(w + '/m.bin', 'wb').write(h.tobytes() + p.tobytes())
open(w + '/m_trunc.bin', 'wb').write(h.tobytes() + p[:-1].tobytes())
tok = rng.integers(0, V, 4*64 + 1).astype('<u2')
sh = np.zeros(256, dtype='<i4'); sh[:3] = [20240520, 1, tok.size]
open(w + '/s.bin', 'wb').write(sh.tobytes() + tok.tobytes())
open(w + '/s_short.bin', 'wb').write(sh.tobytes() + tok[:-3].tobytes())
PYEOF
got=$("$SCALEMIX" eval --model "$W/m.bin" --data "$W/s.bin" --device cpu 2>"$W/err")
want=$("$PY" "$SM_ROOT/tests/unit/gpt2_ref.py" "$W/m.bin" "$W/s.bin" 4 64)
if [ -n "$got" ] && "$PY" -c "import sys; g,w=float(sys.argv[1]),float(sys.argv[2]); sys.exit(0 if abs(g-w) <= 1e-5*w else 1)" "$got" "$want"; then
  pass eval_matches_numpy
else
  fail eval_matches_numpy "scalemix eval printed '$got' ($(cat "$W/err")), numpy $want"
fi
"$SCALEMIX" eval --model "$W/m_trunc.bin" --data "$W/s.bin" --device cpu >/dev/null 2>"$W/err"; rc=$?
if [ $rc -eq 1 ] && grep -q "m_trunc.bin" "$W/err" && grep -q "truncated" "$W/err"; then pass eval_truncated_checkpoint; else fail eval_truncated_checkpoint "exit $rc: $(cat "$W/err")"; fi
"$SCALEMIX" eval --model "$W/m.bin" --data "$W/s_short.bin" --device cpu >/dev/null 2>"$W/err"; rc=$?
if [ $rc -eq 1 ] && grep -q "s_short.bin" "$W/err"; then pass eval_truncated_shard; else fail eval_truncated_shard "exit $rc: $(cat "$W/err")"; fi
"$SCALEMIX" eval --model "$W/m.bin" >/dev/null 2>&1; check_eq eval_usage_exit "$?" 2
"$SCALEMIX" eval --model "$W/m.bin" --data "$W/s.bin" --batch 8 >/dev/null 2>"$W/err"; rc=$?
if [ $rc -eq 1 ] && grep -q "needs" "$W/err"; then pass eval_shard_too_short_for_batch; else fail eval_shard_too_short_for_batch "exit $rc: $(cat "$W/err")"; fi
finish
