#!/usr/bin/env bash
# bench_slurm.sh - the per-stage overhead of the Slurm executor on a private single-node cluster
# (tests/slurm_lib.sh): N echo stages that do nothing, run one after the other (each waits for the previous)
# and then N handed over together (one job array), against the same stages run locally (thread and process).
# The job runs a wrapper of `scalemix` that notes when the stage's process starts and ends, so the figures
# split into: submitted -> process started (sbatch, Slurm's scheduling, job launch), process start -> end
# (stage-exec itself), process end -> the engine saw the stage end (tailing and polling).
# Usage: BUILD=build bash tests/bench/bench_slurm.sh [N]   (prints figures; asserts nothing)
cd "$(dirname "$0")/../.."
export SM_BUILD="${SM_BUILD:-$PWD/${BUILD:-build}}"
source tests/lib.sh
source tests/slurm_lib.sh
slurm_start
n=${1:-20}
realbuild="$SM_BUILD"
real="$SM_BUILD/scalemix"
fake="$TMP_WS/build"
mkdir -p "$fake"
for f in "$SM_BUILD"/*; do [ "$(basename "$f")" = scalemix ] || ln -s "$f" "$fake/"; done
cat >"$fake/scalemix" <<WRAP
#!/bin/sh
echo "start \$(date +%s.%N) \$5" >>"$TMP_WS/procs.log"
"$real" "\$@"
rc=\$?
echo "end \$(date +%s.%N) \$5" >>"$TMP_WS/procs.log"
exit \$rc
WRAP
chmod +x "$fake/scalemix"
export SCALEMIX_PLUGIN_PATH="$realbuild/tests/plugins" SCALEMIX_LUA_PATH="$PWD/lua"
cd "$TMP_WS"
cat >seq.lua <<'LUA'
local sm = require("scalemix")
for i = 1, params.n do sm.stage("sm_test_echo", { value = i, isolate = params.isolate, tags = { params.tag } }, {}, { name = "s/" .. i }) end
LUA
cat >arr.lua <<'LUA'
local sm = require("scalemix")
local f = {}
for i = 1, params.n do f[i] = sm.submit("sm_test_echo", { value = i, tags = { params.tag } }, {}, { name = "a/" .. i }) end
for i = 1, params.n do f[i]:wait() end
LUA
run() { # name, build folder the engine uses, script, extra args...
  local name=$1 build=$2 script=$3
  shift 3
  local t0=$(date +%s.%N)
  SM_BUILD="$build" "$real" run "$script" --db none --quiet --param n="$n" --param tag="$name" --events "$name.jsonl" "$@" >/dev/null 2>"$name.err" ||
    { echo "bench_slurm: $name failed:"; tail -5 "$name.err"; exit 1; }
  echo "$name $t0 $(date +%s.%N)" >>walls.txt
}
run local-thread "$realbuild" seq.lua
run local-process "$realbuild" seq.lua --param isolate=true
run slurm-seq "$fake" seq.lua --executor slurm
run slurm-array "$fake" arr.lua --executor slurm
python3 - "$n" <<'PY'
import json, statistics as st, sys
from datetime import datetime
n = int(sys.argv[1])
def t(s): return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
procs = {}
for line in open("procs.log"):
    what, at, out = line.split()
    procs.setdefault(out.rsplit(".", 2)[-2], {})[what] = float(at)
walls = {l.split()[0]: float(l.split()[2]) - float(l.split()[1]) for l in open("walls.txt")}
def ms(v): return "%7.1f ms" % (1000 * v)
print("bench_slurm: %d echo stages that do nothing, per stage (median; mean in brackets)" % n)
for name in ("local-thread", "local-process", "slurm-seq", "slurm-array"):
    ev = [json.loads(l) for l in open(name + ".jsonl")]
    sub, end, beg = {}, {}, {}
    for e in ev:
        if e["type"] == "stage_state" and e["state"] == "submitted": sub[e["stage_run_id"]] = t(e["at"])
        if e["type"] == "stage_end": end[e["stage_run_id"]] = t(e["finished_at"])
        if e["type"] == "stage_start": beg[e["stage_run_id"]] = t(e["started_at"])
    total = [end[k] - beg[k] for k in end]
    line = "  %-13s wall %6.2f s (%s/stage); stage start->end %s [%s]" % (name, walls[name], ms(walls[name] / n).strip(), ms(st.median(total)), ms(st.mean(total)).strip())
    print(line)
    if sub:
        s2p = [procs[k]["start"] - sub[k] for k in sub]
        run = [procs[k]["end"] - procs[k]["start"] for k in sub]
        p2e = [end[k] - procs[k]["end"] for k in sub]
        print("      submitted->process start %s [%s]; process %s [%s]; process end->engine saw it %s [%s]" % (
            ms(st.median(s2p)), ms(st.mean(s2p)).strip(), ms(st.median(run)), ms(st.mean(run)).strip(), ms(st.median(p2e)), ms(st.mean(p2e)).strip()))
PY
