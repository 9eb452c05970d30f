#!/usr/bin/env bash
# The AutoScale miniature of test_autoscale_e2e.sh (its corpus, model and budgets; one seed, no validation, to
# keep it short) run twice: locally, and with --executor slurm on a real single-node cluster
# (tests/slurm_lib.sh) with the lineage in the embedded PostgreSQL, up to 16 runs submitted at once. Both
# give the same report (weights), plots and metric points; the 2m+1 DDO runs of each budget went to Slurm as
# one job array; every metric point of the Slurm run is in the database exactly once.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../slurm_lib.sh"
slurm_start
cd "$TMP_WS"
at_exit "\"$SCALEMIX\" db stop"
real_sbatch=$(command -v sbatch)
mkdir -p bin local onslurm
printf '#!/bin/sh\necho "$*" >>"%s/sbatch.calls"\nexec "%s" "$@"\n' "$TMP_WS" "$real_sbatch" >bin/sbatch
chmod +x bin/sbatch
export PATH="$TMP_WS/bin:$PATH"
autoscale_corpus
params=(--param corpus=corpus --param out=out --param n1=2048 --param ratio=2 --param target=8192 --param layers=1 --param heads=2
        --param channels=32 --param seq=32 --param batch=4 --param eval_batches=4 --param curve_eval_batches=2
        --param val_fraction=0.3 --param device=cpu --param validate=false --param repeats=1 --param train_repeats=1)

(cd local && ln -s ../corpus corpus && SCALEMIX_HOME=$TMP_WS/ws-local "$SCALEMIX" run "$SM_ROOT/pipelines/autoscale.lua" \
  "${params[@]}" --db none --events ../local.jsonl >report.txt 2>run.err)
check_eq "the local run succeeds" $? 0
(cd onslurm && ln -s ../corpus corpus && "$SCALEMIX" run "$SM_ROOT/pipelines/autoscale.lua" "${params[@]}" --executor slurm \
  --param parallel=16 --events ../slurm.jsonl >report.txt 2>run.err)
rc=$?
check_eq "the run on Slurm succeeds" $rc 0
[ $rc -eq 0 ] || tail -20 onslurm/run.err
check "the report has the mixture table" grep -q "^Mixture weights by budget" onslurm/report.txt
# The report as it would read for any run id, its flagged fits sorted (listed in the order the fits finished).
norm() {
  grep -v '^Lineage: run ' "$1" | python3 -c '
import sys
for l in sys.stdin:
    l = l.rstrip("\n")
    if l.startswith("Flagged fits: "): l = "Flagged fits: " + "; ".join(sorted(l[14:].split("; ")))
    print(l)'
}
check_eq "the Slurm run's report is the local one" "$(diff <(norm local/report.txt) <(norm onslurm/report.txt) && echo same)" same
check_eq "so are its plots" "$(cd local/out && for f in *.svg; do cmp -s "$f" "../../onslurm/out/$f" || echo "$f differs"; done)" ""

# the same metric points, each once
metrics() { python3 -c '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
stage = {e["stage_run_id"]: e["stage"] for e in ev if e["type"] == "stage_start"}
pts = sorted("%s %s %s %s %r" % (stage[e["stage_run_id"]], e["name"], e["step"], e.get("domain"), e["value"]) for e in ev if e["type"] == "metric")
print(len(pts)); print("\n".join(pts))' "$1"; }
metrics local.jsonl >local.metrics
metrics slurm.jsonl >slurm.metrics
check "the runs recorded metrics" test "$(head -1 local.metrics)" -gt 0
check_eq "the Slurm run's metric points are the local ones" "$(cmp -s local.metrics slurm.metrics && echo same)" same
sql() { "$SCALEMIX" sql -At -c "$1" 2>/dev/null; }
check_eq "every metric point of the Slurm run is in the database once" "$(sql "select count(*) from metrics")" "$(head -1 slurm.metrics)"
check_eq "the run is recorded as succeeded" "$(sql "select status from runs where pipeline = 'autoscale'")" succeeded
check_eq "DDO's 2m+1 = 7 proxy runs at each of two budgets succeeded" \
  "$(sql "select count(*) from stage_runs where plugin = 'ablate' and status = 'succeeded'")" 14
check_eq "the 7 DDO runs of each budget went as one job array" \
  "$(grep -c -- '--job-name=sm:ddo/n1 .*--array=0-6 ' sbatch.calls) $(grep -c -- '--job-name=sm:ddo/n2 .*--array=0-6 ' sbatch.calls)" "1 1"
check "each training job asks Slurm for the host memory its stage needs (--mem from resources())" \
  grep -qE -- '--job-name=sm:ddo/n1 .*--mem=[0-9]+M .*--array=0-6 ' sbatch.calls
arr=$(sed -n 's/.*ddo\/n2\/base: submitted to Slurm as job \([0-9]*\)_[0-9]*$/\1/p' onslurm/run.err)
check_eq "Slurm lists n2's 7 tasks under one ArrayJobId" "$(squeue -h -t all -r -j "$arr" -o '%F %T' | sort | uniq -c | sed 's/^ *//')" "7 $arr COMPLETED"
finish
