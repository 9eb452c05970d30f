#!/usr/bin/env bash
# The main job in miniature, end to end with the embedded PostgreSQL: pipelines/autoscale.lua on three small
# domains made from text every Debian machine has, a tiny GPT-2, tiny budgets, two seeds of the base runs and
# of the target runs, and the validation at a third budget. Checks the report (noise, intervals, verdict,
# validation), the plots, the lineage ("how did the weights move with scale" is one query), and that a second
# run reuses everything.
source "$(dirname "$0")/../lib.sh"
cd "$TMP_WS"
at_exit "\"$SCALEMIX\" db stop"
autoscale_corpus
params=(--param corpus=corpus --param out=out --param n1=2048 --param ratio=2 --param target=8192 --param layers=1 --param heads=2
        --param channels=32 --param seq=32 --param batch=4 --param eval_batches=4 --param curve_eval_batches=2
        --param val_fraction=0.3 --param device=cpu --param validate=true --param repeats=2 --param train_repeats=2)
"$SCALEMIX" run "$SM_ROOT/pipelines/autoscale.lua" "${params[@]}" >report.txt 2>run.err
rc=$?
check_eq "the pipeline succeeds" $rc 0
[ $rc -eq 0 ] || tail -20 run.err
grep -q "^Mixture weights by budget" report.txt; check_eq "report has the mixture table" $? 0
grep -q "^  vs uniform " report.txt && grep -q "^  vs proportional " report.txt; check_eq "report has a speed-up per baseline" $? 0
grep -q "^Extrapolation check at" report.txt; check_eq "report has the extrapolation check" $? 0
grep -Eq "^  n1 \(2.05e\+03 tokens\): base run over 2 seeds: training sd [0-9.]+$" report.txt
check_eq "report has the training noise of the repeated base runs" $? 0
grep -Eq "^    code +[0-9.]+ / [0-9.]+ / [0-9.]+ / [0-9.]+" report.txt
check_eq "report has per domain the fit's noise, the domain's own, the paired evaluation error of the contrasts and the snr" $? 0
grep -Eq "^  per domain at n2: the fit's noise \(sd of one seed's contrast, paired by seed; pooled over the domains, 6 degrees of freedom\)" report.txt
check_eq "every DDO run repeated (the preset's repeat=all): the fit pairs the contrasts by seed, 6 perturbed runs x 1 df" $? 0
grep -Eq "^  at n2, [0-3] of 3 domains' contrasts stand above the noise" report.txt
check_eq "report counts the domains above the noise per budget" $? 0
grep -Eq "^  vs uniform +[-+][0-9.]+ \[[-+][0-9.]+, [-+][0-9.]+\]  (AutoScale better|AutoScale worse|not significant)" report.txt
check_eq "report has the verdict against uniform with its interval" $? 0
grep -Eq "^  predicted vs directly optimised weights: L1 [0-9.]+ \[[0-9.]+, [0-9.]+\]" report.txt
check_eq "report has the validation's L1 distance with its interval" $? 0
grep -Eq "^  measured mean validation perplexity there: predicted mixture [0-9.]+ \(sd [0-9.]+, 2 seeds\); directly optimised" report.txt
check_eq "report has both mixtures' measured metric at the validation budget" $? 0
grep -Eq "^  n2 fit at its optimum: predicted metric [0-9.]+, measured [0-9.]+" report.txt
check_eq "report checks the fit's prediction at its optimum" $? 0
grep -Eq "^  vs uniform .*90% interval .* seeds: .*final perplexity" report.txt
check_eq "report gives compare's speed-up and final difference with intervals over the seeds" $? 0
# One figure for the verdict: the report prints compare's final difference, which is the mean over paired seeds
# of the final evaluations on the fixed validation sample (the runs' .metric), not the curves' last points.
python3 - "$("$SCALEMIX" sql -At -c "select result from stage_runs where plugin = 'compare'" 2>/dev/null)" \
  "$("$SCALEMIX" sql -At -c "select stage || ' ' || (result->>'metric') || ' ' || (result->'curve'->'ppl'->> -1) from stage_runs where plugin = 'train' and stage ~ '^train/(autoscale|uniform)/seed'" 2>/dev/null)" \
  report.txt <<'PY'
import json, re, sys
cmp = json.loads(sys.argv[1])
runs = {}
for line in sys.argv[2].splitlines():
    stage, metric, curve_end = line.split()
    runs[stage] = (float(metric), float(curve_end))
seeds = sorted(s.rsplit("/", 1)[1] for s in runs if s.startswith("train/autoscale/"))
diff = [runs["train/autoscale/" + s][0] - runs["train/uniform/" + s][0] for s in seeds]
curve_diff = [runs["train/autoscale/" + s][1] - runs["train/uniform/" + s][1] for s in seeds]
fd = cmp["final_diff"]["uniform"]
ok = len(seeds) == 2 and abs(fd["value"] - sum(diff) / len(diff)) < 1e-9 and abs(sum(curve_diff) - sum(diff)) > 1e-6
text = open(sys.argv[3]).read().split("Verdict at the target", 1)[1]
m = re.search(r"^  vs uniform +([-+][0-9.]+) \[([-+][0-9.]+), ([-+][0-9.]+)\]", text, re.M)
ok = ok and m and all(abs(float(x) - fd[k]) <= 0.005 + 1e-9 for x, k in zip(m.groups(), ("value", "lo", "hi")))
if not ok: print("compare", fd, "runs", runs, "report", m and m.groups(), file=sys.stderr)
sys.exit(0 if ok else 1)
PY
check_eq "the report's verdict is compare's final difference, from the final evaluations (not the curves' ends)" $? 0
for f in fit_n1.svg fit_n2.svg weights.svg curves.svg report.txt; do
  [ -s "out/$f" ] && grep -q "</svg>\|Mixture" "out/$f"; check_eq "output $f written" $? 0
done
sql() { "$SCALEMIX" sql -At -c "$1" 2>/dev/null; }
check_eq "the run is recorded as succeeded" "$(sql "select status from runs where pipeline = 'autoscale'")" "succeeded"
check_eq "DDO ran 2m+1 proxy runs per budget, each with 2 seeds (14 x 3 budgets with the validation)" \
  "$(sql "select count(*) from stage_runs where plugin = 'ablate' and status = 'succeeded'")" "42"
check_eq "every proxy run stores its per-batch validation losses (eval_batches per domain), for paired evaluation errors" \
  "$(sql "select distinct jsonb_array_length(v) from stage_runs, jsonb_each(result->'val_batch_loss') e(k, v) where plugin = 'ablate'")" "4"
check_eq "two seeds of each target run, of both validation mixtures and of the n2 optimum" \
  "$(sql "select count(*) from stage_runs where plugin = 'train' and status = 'succeeded' and stage like '%/seed%'")" "12"
check_eq "mixtures by method and budget: ddo at three budgets, autoscale at two" \
  "$(sql "select method || ':' || count(distinct budget_tokens) from mixtures group by method order by method")" "autoscale:2
ddo:3"
python3 - "$(sql "select string_agg(weight::text, ',') from mixtures m join stage_runs s using (stage_run_id) where s.stage = 'extrapolate/8192'")" <<'PY'
import sys
w = [float(x) for x in sys.argv[1].split(",")]
sys.exit(0 if len(w) == 3 and abs(sum(w) - 1) < 1e-9 and min(w) > 0 else 1)
PY
check_eq "the extrapolated weights are a mixture" $? 0
check_eq "fits recorded per domain and budget" "$(sql "select count(*) from fits")" "9"
n=$(sql "select count(distinct u.stage_run_id) from stage_upstream((select stage_run_id from stage_runs where stage = 'fit/4096')) u join stage_runs s using (stage_run_id) where s.plugin = 'ablate'")
check_eq "lineage: the fit at n2 walks back to its 14 proxy runs (7 runs x 2 seeds)" "$n" 14
n=$(sql "select count(*) from lineage_up((select artifact_id from stage_io i join stage_runs s using (stage_run_id) where s.stage = 'train/autoscale/seed1' and i.name = 'model')) where stage like 'fit/%'")
[ "$n" -ge 2 ]; check_eq "lineage: the AutoScale model walks back to both fits ($n)" $? 0
"$SCALEMIX" plan "$SM_ROOT/pipelines/autoscale.lua" "${params[@]}" > plan.txt
check_eq "a second look plans nothing to run" "$(grep -c '^run ' plan.txt) $(grep -c '^reuse' plan.txt)" "0 $(grep -c . plan.txt)"
finish
