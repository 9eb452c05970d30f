#!/usr/bin/env bash
# The Slurm executor against a real single-node cluster (tests/slurm_lib.sh), with the echo test stage:
# runs handed over together go as one job array and give the result a local run gives; a stage may stay
# local; `plan` shows the sbatch request; a job that dies or is scancelled fails its stage with Slurm's
# reason; SIGKILL of the engine, then the same command, re-attaches to the running jobs (sbatch is not called
# again) and finishes with the same result; Ctrl-C scancels what the run submitted. sbatch calls are counted
# by a wrapper first on PATH.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../slurm_lib.sh"
slurm_start
export SCALEMIX_PLUGIN_PATH="$SM_BUILD/tests/plugins"
cd "$TMP_WS"
real_sbatch=$(command -v sbatch)
mkdir -p bin
cat >bin/sbatch <<WRAP
#!/bin/sh
echo "\$*" >>"$TMP_WS/sbatch.calls"
exec "$real_sbatch" "\$@"
WRAP
chmod +x bin/sbatch
export PATH="$TMP_WS/bin:$PATH"
touch sbatch.calls
calls() { wc -l <sbatch.calls; }

cat >p.lua <<'LUA'
local sm = require("scalemix")
sm.config { executor = params.config_executor }
local futs = {}
for i = 1, params.n or 3 do
  futs[i] = sm.submit("sm_test_echo", { value = i, sleep_ms = params.sleep or 1500, text = "t" .. i,
    crash = params.crash == i, tags = { params.tag or "" } }, {}, { name = "echo/" .. i })
end
local out = {}
for i, f in ipairs(futs) do out[i] = string.format("%s=%g", f.name, f:wait().result.double) end
local l = sm.stage("sm_test_echo", { value = 100, tags = { params.tag or "" } }, {}, { name = "here", executor = "local" })
print("result " .. table.concat(out, " ") .. " here=" .. l.result.double)
LUA
want="result echo/1=2 echo/2=4 echo/3=6 here=200"

# Waits until squeue lists no job (a finished run's jobs may still be completing), at most 60 s.
wait_queue_empty() {
  for _ in $(seq 600); do [ -z "$(squeue -h -o %i)" ] && return 0; sleep 0.1; done
  return 1
}
# Waits until squeue lists a RUNNING job whose name starts with $1 (at most 60 s).
wait_running() {
  for _ in $(seq 600); do
    squeue -h -o '%j %T' | grep -q "^$1.* RUNNING$" && return 0
    sleep 0.1
  done
  return 1
}
# Waits for process $1 to end (at most $2 s); its exit status is then in $waited_rc.
wait_pid() {
  for _ in $(seq $(($2 * 10))); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  wait "$1"
  waited_rc=$?
}

# --- plan, then a run: one array for the three runs handed over together, the fourth stage stays local
SCALEMIX_HOME=$TMP_WS/ws1 "$SCALEMIX" plan p.lua --db none --executor slurm --slurm-time 10 >plan.txt 2>plan.err
check_eq "plan shows an sbatch request per stage that would run on Slurm" "$(grep -c '^ *sbatch --parsable --job-name=sm:echo/[123] --time=10 .*--cpus-per-task=1 ' plan.txt)" 3
check_eq "plan calls no sbatch" "$(calls)" 0
SCALEMIX_HOME=$TMP_WS/ws1 "$SCALEMIX" run p.lua --db none --executor slurm --events ev1.jsonl >out1.txt 2>err1.txt
check_eq "the run on Slurm succeeds" $? 0
check_eq "it gives the expected result" "$(grep '^result' out1.txt)" "$want"
check_eq "one sbatch call, a job array of three" "$(calls) $(grep -c -- '--array=0-2 ' sbatch.calls)" "1 1"
job=$(sed -n 's/.*echo\/1: submitted to Slurm as job \([0-9]*\)_0$/\1/p' err1.txt)
check_eq "Slurm knows the three tasks under one ArrayJobId" \
  "$(squeue -h -t all -r -j "$job" -o '%F %K %T' | sort | tr '\n' ' ')" "$job 0 COMPLETED $job 1 COMPLETED $job 2 COMPLETED "
check_eq "stage_state events: submitted, then running, with the job id" \
  "$(python3 -c '
import json, sys
ev = [json.loads(l) for l in open("ev1.jsonl")]
st = [(e["state"], e["job_id"], e["executor"]) for e in ev if e["type"] == "stage_state"]
print(len([s for s in st if s[0] == "submitted"]), len([s for s in st if s[0] == "running"]), sorted(set(s[1] for s in st)), set(s[2] for s in st))
')" "3 3 ['${job}_0', '${job}_1', '${job}_2'] {'slurm'}"
SCALEMIX_HOME=$TMP_WS/ws1l "$SCALEMIX" run p.lua --db none >out1l.txt 2>err1l.txt
check_eq "the same pipeline run locally gives the same result" "$(grep '^result' out1l.txt)" "$want"
SCALEMIX_HOME=$TMP_WS/ws1 "$SCALEMIX" run p.lua --db none --param config_executor=slurm >out1c.txt 2>err1c.txt
check_eq "a second run reuses every stage: no sbatch" "$(grep '^result' out1c.txt) $(calls)" "$want 1"
SCALEMIX_HOME=$TMP_WS/ws1c "$SCALEMIX" run p.lua --db none --param config_executor=slurm --param n=1 >out1d.txt 2>err1d.txt
check_eq "sm.config{executor='slurm'} sends stages to Slurm without --executor" "$(grep -c 'submitted to Slurm' err1d.txt) $(calls)" "1 2"

# --- a job that dies (the stage's process gets SIGSEGV) fails its stage with Slurm's reason
SCALEMIX_HOME=$TMP_WS/ws2 "$SCALEMIX" run p.lua --db none --executor slurm --param crash=2 --param sleep=10 >out2.txt 2>err2.txt
check_eq "the run fails" $? 1
sig=11
[ -n "${SM_ASAN:-}" ] && sig=6 # AddressSanitizer reports the SIGSEGV, then aborts (abort_on_error=1)
grep -Eq "echo/2: failed after .*: job [0-9]+_1 on $(hostname -s) failed: killed by signal $sig \(FAILED" err2.txt
rc=$?
check_eq "the stage fails with Slurm's state and the signal ($(grep -o 'killed by signal [0-9]*' err2.txt | head -1))" $rc 0

# --- a job scancelled by someone else fails its stage with the reason
check "the queue is empty before it" wait_queue_empty
SCALEMIX_HOME=$TMP_WS/ws3 "$SCALEMIX" run p.lua --db none --executor slurm --param n=1 --param sleep=60000 >out3.txt 2>err3.txt &
pid=$!
wait_running sm:echo/1; check_eq "the job runs" $? 0
scancel --name=sm:echo/1
wait_pid $pid 60
check_eq "the run fails" "$waited_rc" 1
grep -Eq "echo/1: failed after .*: job [0-9]+ was cancelled \(scancel" err3.txt
check_eq "the stage fails saying the job was cancelled" $? 0

# --- SIGKILL of the engine while its jobs run; the same command again re-attaches and finishes
check "the queue is empty before it" wait_queue_empty
before=$(calls)
SCALEMIX_HOME=$TMP_WS/ws4 "$SCALEMIX" run p.lua --db none --executor slurm --param sleep=6000 --param tag=k >out4a.txt 2>err4a.txt &
pid=$!
wait_running sm:echo; check_eq "the array runs" $? 0
kill -KILL $pid
wait $pid 2>/dev/null
check "its jobs outlive the engine" test -n "$(squeue -h -o %i)"
SCALEMIX_HOME=$TMP_WS/ws4 "$SCALEMIX" run p.lua --db none --executor slurm --param sleep=6000 --param tag=k >out4.txt 2>err4.txt
check_eq "the second engine finishes the run" $? 0
check_eq "with the same result" "$(grep '^result' out4.txt)" "$want"
check_eq "it re-attached to the three jobs" "$(grep -c 're-attached to Slurm job' err4.txt)" 3
check_eq "and submitted nothing again (one sbatch call in all)" "$(($(calls) - before))" 1

# --- --slurm-requeue: a job whose process is killed (no final status from its stage) is submitted once more
check "the queue is empty before it" wait_queue_empty
SCALEMIX_HOME=$TMP_WS/ws6 "$SCALEMIX" run p.lua --db none --executor slurm --slurm-requeue --param n=1 --param sleep=3000 \
  --param tag=r >out6.txt 2>err6.txt &
pid=$!
wait_running sm:echo/1; check_eq "the job runs" $? 0
kill -KILL $(scontrol listpids "$(squeue -h -n sm:echo/1 -o %A)" | awk 'NR > 1 && $1 > 0 { print $1 }')
wait_pid $pid 60
check_eq "the run succeeds on the second job" "$waited_rc" 0
check_eq "with its result" "$(grep '^result' out6.txt)" "result echo/1=2 here=200"
check "the first job's end is named" grep -Eq "echo/1: job [0-9]+ on .* failed: killed by signal 9 .*; submitting it once more \(--slurm-requeue\)" err6.txt

# --- Ctrl-C scancels what the run submitted
check "the queue is empty before it" wait_queue_empty
SCALEMIX_HOME=$TMP_WS/ws5 "$SCALEMIX" run p.lua --db none --executor slurm --param sleep=60000 --param tag=c >out5.txt 2>err5.txt &
pid=$!
wait_running sm:echo; check_eq "the array runs" $? 0
kill -INT $pid
wait_pid $pid 60
check_eq "the run ends cancelled" "$waited_rc" 1
slurm_wait_gone "$(squeue -h -o %A | head -1)" 30
check_eq "no job is left in Slurm" "$(squeue -h -o %i | wc -l)" 0
check_eq "the stages say cancelled" "$(grep -c 'echo/[123]: cancelled' err5.txt)" 3
finish
