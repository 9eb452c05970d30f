# tests/integration/web_lib.sh - sourced by test_web*.sh after lib.sh: records runs in the embedded
# PostgreSQL of the test's workspace and starts `scalemix serve` on a free loopback port.
#   web_record     real engine runs (tests/plugins/sm_test_echo: a two-stage pipeline run twice, so that the
#                  second reuses, and a failing one) and, through the sink's ingest driver, an AutoScale run
#                  (fit per budget, mixtures, compare), a run still running (reason, resources, Slurm state, 121
#                  log lines), a 5,000-point metric, hostile text
#                  (markup, quotes) in names and errors, and a schedule with a backfill.
#   web_start      starts the server (extra arguments passed on); sets WEB_PID and URL.
#   get URL        prints the body; code URL prints the HTTP status.
DRIVER="$SM_BUILD/tests/sm_db_cli"
unset SCALEMIX_DB PGHOST PGDATABASE PGSERVICE
export SCALEMIX_PLUGIN_PATH="$SM_BUILD/tests/plugins"
at_exit "\"$SCALEMIX\" db stop"
cd "$TMP_WS" || exit 1

web_record() {
  printf 'local sm = require "scalemix"\nlocal a = sm.stage("sm_test_echo", { value = 1, text = "hello" })\nsm.stage("sm_test_echo", { value = a.result.double }, { t = a.outputs.text })\n' >p.lua
  printf 'local sm = require "scalemix"\nsm.stage("sm_test_echo", { value = 1, fail = true })\n' >fail.lua
  "$SCALEMIX" run --quiet p.lua >run1.out 2>&1 || echo "FAIL: setup: p.lua did not run ($(tail -3 run1.out))"
  "$SCALEMIX" run --quiet p.lua >run2.out 2>&1 || echo "FAIL: setup: p.lua did not run twice"
  "$SCALEMIX" run --quiet fail.lua >run3.out 2>&1 && echo "FAIL: setup: fail.lua succeeded"
  python3 - <<'EOF' >events.jsonl
import json, math
seq = {}
def ev(run, typ, **f):
    seq[run] = seq.get(run, 0) + 1
    f.update(type=typ, run_id=run, seq=seq[run], event_id="%s/%d" % (run, seq[run]))
    print(json.dumps(f))
t0 = "2026-12-01T10:00:00Z"
def stage(run, sid, name, plugin, params=None, status="succeeded", result=None, error=None, end=True, **new):
    ev(run, "stage_start", stage_run_id=sid, stage=name, plugin=plugin, plugin_version="1.0.0", plugin_sha256="x",
       cache_key="k-" + sid, params=params or {}, reused=False, attempt=1, started_at=t0, **new)
    if end:
        ev(run, "stage_end", stage_run_id=sid, status=status, finished_at="2026-12-01T10:05:00Z", error=error, result=result)
def run_start(run, pipeline, started, trigger="manual", **k):
    ev(run, "run_start", pipeline=pipeline, script_path="/p/" + pipeline + ".lua", script_sha256="ab", params={"budget": 1e9},
       trigger=trigger, nominal_time=k.get("nominal"), schedule=k.get("schedule"), parent_run_id=None, started_at=started, host="h")
# An AutoScale run: two fits (per budget), DDO mixtures, the extrapolated one, baselines, a comparison.
r = "as-run"
run_start(r, "autoscale", "2026-12-01T10:00:00Z")
doms = ["web", "code"]
for i, budget in enumerate([1e8, 3e8]):
    params = {"web": {"a": 0.5, "b": 0.4 + 0.1 * i, "c": 0.8}, "code": {"a": 0.2, "b": 0.3, "c": 0.9}}
    pts = {d: [[x, (x + p["a"]) ** -p["b"] + p["c"]] for x in (0.33, 1, 3)] for d, p in params.items()}
    res = {"domains": doms, "params": params, "points": pts, "n": {"web": 1.4, "code": 0.6},
           "alternatives": {"web": {"a": 0.1, "b": 0.9, "c": 0.7}}, "rmse": {"web": 0.001, "code": 0.002},
           "flags": {"web": [], "code": ["few_points"]}, "weights": {"web": 0.7, "code": 0.3}, "budget": budget}
    sid = "as-fit-%d" % i
    stage(r, sid, "fit_%d" % i, "fit", {"budget": budget}, result=res)
    ev(r, "mixture", stage_run_id=sid, method="ddo", budget_tokens=budget,
       entries=[{"domain": "web", "weight": 0.7 - 0.05 * i, "tokens": 1}, {"domain": "code", "weight": 0.3 + 0.05 * i, "tokens": 1}])
stage(r, "as-extra", "extrapolate", "extrapolate")
ev(r, "mixture", stage_run_id="as-extra", method="autoscale", budget_tokens=3e9,
   entries=[{"domain": "web", "weight": 0.55, "tokens": 1}, {"domain": "code", "weight": 0.45, "tokens": 1}])
curves = {n: {"steps": list(range(10, 210, 10)), "values": [s0 * math.exp(-k / 10) + 20 for k in range(20)]}
          for n, s0 in (("autoscale", 80), ("uniform", 90))}
stage(r, "as-cmp", "compare", "compare", {"curves": curves, "target": "autoscale", "metric": "perplexity"},
      result={"target": "autoscale", "metric": "perplexity", "speedup": {"uniform": 0.31}, "final": {"uniform": 21.0},
              "summary": {"uniform": "speed-up +31.0% [90% interval +12.0%, +44.0%, 3 seeds: significant]"},
              "steps_to_reach": {"uniform": 150}, "baseline_final_step": {"uniform": 200}})
for k in range(5000):
    ev(r, "metric", stage_run_id="as-cmp", name="val_loss", step=k, domain="web", value=4 - k / 5000 + (0.3 if k % 997 == 0 else 0),
       recorded_at=t0)
ev(r, "run_end", status="succeeded", finished_at="2026-12-01T11:00:00Z", error=None)
# Still running, with a running stage that reports a metric, says why it ran and what it needs, waits on
# Slurm and has logged 121 lines (markup in one).
r = "live-run"
run_start(r, "autoscale", "2026-12-02T09:00:00Z")
stage(r, "live-train", "train", "train", end=False, reason="parameter 'budget' changed (1000000 -> 2000000)",
      resources={"threads": 4, "gpu": 1, "device_memory_bytes": 2147483648, "isolate": 0, "executor": "slurm"})
ev(r, "metric", stage_run_id="live-train", name="train_loss", step=40, domain=None, value=3.25, recorded_at=t0)
ev(r, "stage_state", stage_run_id="live-train", state="submitted", executor="slurm", job_id="4242_1", reason=None, at=t0)
ev(r, "stage_state", stage_run_id="live-train", state="pending", executor="slurm", job_id="4242_1", reason="Resources", at=t0)
for k in range(120):
    ev(r, "stage_log", stage_run_id="live-train", level="warn" if k == 7 else "info", message="step %d loss %.3f" % (k, 4 - k / 100),
       at="2026-12-02T09:%02d:%02dZ" % (k // 60, k % 60))
ev(r, "stage_log", stage_run_id="live-train", level="error", message="<script>alert(3)</script> & 'last'", at="2026-12-02T09:02:00Z")
# Hostile text everywhere it can come from the database.
r = "xss-run"
run_start(r, "<script>alert(1)</script>", "2026-11-30T09:00:00Z")
stage(r, "xss-stage", "<img src=x onerror=alert(2)>", "sm_test_echo", {"q": "'; DROP TABLE runs; --"}, status="failed",
      error="/p/x.lua:7: stage <b>boom</b> failed: \"quoted\" & 'single'")
ev(r, "run_end", status="failed", finished_at="2026-11-30T09:01:00Z", error="/p/x.lua:7: stage failed")
# A scheduled run and a backfilled one.
for r, trig, nom in (("sched-run", "schedule", "2026-11-29T01:00:00Z"), ("backfill-run", "backfill", "2026-11-20T01:00:00Z")):
    run_start(r, "nightly", nom, trigger=trig, schedule="nightly", nominal=nom)
    ev(r, "run_end", status="succeeded", finished_at=nom, error=None)
EOF
  out=$("$DRIVER" ingest events.jsonl 2>&1 | tail -1)
  case "$out" in emitted=*" rejected=0") ;; *) echo "FAIL: setup: ingest ($out)";; esac
  "$SCALEMIX" schedule add nightly --cron "0 2 * * *" --tz Europe/Berlin "$TMP_WS/p.lua" >/dev/null 2>&1 ||
    echo "FAIL: setup: schedule add"
  "$SCALEMIX" schedule backfill nightly --from 2026-11-20T00:00Z --to 2026-11-21T23:59Z --enqueue >/dev/null 2>&1 ||
    echo "FAIL: setup: schedule backfill --enqueue"
}

web_start() {
  "$SCALEMIX" serve --listen 127.0.0.1:0 "$@" >"$TMP_WS/serve.out" 2>"$TMP_WS/serve.err" &
  WEB_PID=$!
  at_exit "kill $WEB_PID"
  for _ in $(seq 1 300); do grep -q "^serving on port" "$TMP_WS/serve.out" 2>/dev/null && break; sleep 0.1; done
  grep -q "^serving on port" "$TMP_WS/serve.out" || echo "FAIL: serve did not start: $(tail -3 "$TMP_WS/serve.err")"
  URL="http://127.0.0.1:$(sed -n 's/^serving on port //p' "$TMP_WS/serve.out")"
}

get() { curl -s --max-time 20 "$@"; }
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 20 "$@"; }
