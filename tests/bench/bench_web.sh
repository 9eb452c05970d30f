#!/usr/bin/env bash
# bench_web.sh - `scalemix serve` on a large lineage database: 10,000 runs (3 stage runs each, one in ten
# failed, each stage run with its reason, resources and 30 log lines; the newest run's stages with 2,001
# lines each, the most a stage run keeps), an AutoScale run, and one stage run with a 1,000,000-point metric. Prints, per page, the time to
# first byte and to the last byte (the whole HTML with its inline SVG; median of 5 requests, curl), the
# time headless chromium takes to load and lay out the metric and runs pages (minus its own start-up,
# measured on about:blank), and the server's memory (VmRSS, VmHWM). Usage: bash tests/bench/bench_web.sh
# (BUILD=build by default; needs curl, python3 and chromium for the browser figures).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
SM="$ROOT/$BUILD/scalemix"
WS=$(mktemp -d /tmp/sm-bench-web.XXXXXX)
chmod 755 "$WS"
export SCALEMIX_HOME="$WS/ws"
unset SCALEMIX_DB PGHOST PGDATABASE PGSERVICE
cleanup() { [ -n "${BENCH_KEEP:-}" ] && { echo "kept $WS (server pid ${SPID:-})"; return; }; [ -n "${SPID:-}" ] && kill "$SPID" 2>/dev/null; wait 2>/dev/null; "$SM" db stop >/dev/null 2>&1; rm -rf "$WS"; }
trap cleanup EXIT
"$SM" db start >/dev/null 2>&1 || { echo "bench_web: cannot start the embedded database"; exit 1; }
DSN=$("$SM" db dsn)
t0=$(date +%s.%N)
psql -q -v ON_ERROR_STOP=1 "$DSN" <<'EOF' || { echo "bench_web: loading failed"; exit 1; }
INSERT INTO runs (run_id, pipeline, status, trigger, started_at, finished_at, error, event_id, params)
SELECT 'run-' || g, 'pipe-' || (g % 7), CASE WHEN g % 10 = 0 THEN 'failed' ELSE 'succeeded' END,
       CASE WHEN g % 5 = 0 THEN 'schedule' ELSE 'manual' END,
       timestamptz '2026-01-01' + g * interval '1 minute', timestamptz '2026-01-01' + g * interval '1 minute' + interval '40 s',
       CASE WHEN g % 10 = 0 THEN '/p/x.lua:12: stage train failed' END, 'ev-run-' || g, jsonb_build_object('g', g)
  FROM generate_series(1, 10000) g;
INSERT INTO stage_runs (stage_run_id, run_id, stage, plugin, status, reused, started_at, finished_at, event_id, params, error)
SELECT 'sr-' || g || '-' || k, 'run-' || g, 'stage' || k, 'sm_test_echo',
       CASE WHEN g % 10 = 0 AND k = 3 THEN 'failed' ELSE 'succeeded' END, k = 1 AND g % 2 = 0,
       timestamptz '2026-01-01' + g * interval '1 minute', timestamptz '2026-01-01' + g * interval '1 minute' + k * interval '10 s',
       'ev-sr-' || g || '-' || k, jsonb_build_object('k', k), CASE WHEN g % 10 = 0 AND k = 3 THEN 'failed' END
  FROM generate_series(1, 10000) g, generate_series(1, 3) k;
INSERT INTO artifacts (artifact_id, kind, name, path, produced_by, event_id)
SELECT encode(sha256(('a' || g || '-' || k)::bytea), 'hex'), 'data', 'out' || k, '/ws/out' || k, 'sr-' || g || '-' || k, 'ev-a-' || g || '-' || k
  FROM generate_series(9990, 10000) g, generate_series(1, 3) k;
INSERT INTO stage_io (stage_run_id, artifact_id, direction, name, event_id)
SELECT 'sr-' || g || '-' || k, encode(sha256(('a' || g || '-' || k)::bytea), 'hex'), 'out', 'out' || k, 'ev-o-' || g || '-' || k
  FROM generate_series(9990, 10000) g, generate_series(1, 3) k
UNION ALL
SELECT 'sr-' || g || '-' || (k + 1), encode(sha256(('a' || g || '-' || k)::bytea), 'hex'), 'in', 'in', 'ev-i-' || g || '-' || k
  FROM generate_series(9990, 10000) g, generate_series(1, 2) k;
INSERT INTO metrics (event_id, stage_run_id, name, step, domain, value)
SELECT 'm-' || s, 'sr-10000-2', 'train_loss', s, NULL, 3 + exp(-s / 200000.0) + 0.05 * sin(s / 50.0)
  FROM generate_series(1, 1000000) s;
INSERT INTO stage_runs (stage_run_id, run_id, stage, plugin, status, started_at, finished_at, event_id, result)
VALUES ('sr-fit', 'run-10000', 'fit', 'fit', 'succeeded', now(), now(), 'ev-fit',
        '{"domains":["web","code"],"params":{"web":{"a":0.5,"b":0.4,"c":0.8},"code":{"a":0.2,"b":0.3,"c":0.9}},
          "points":{"web":[[0.33,1.9],[1,1.6],[3,1.3]],"code":[[0.33,2.1],[1,1.85],[3,1.6]]},"n":{"web":1.4,"code":0.6},
          "rmse":{"web":0.01,"code":0.02},"weights":{"web":0.7,"code":0.3},"budget":1e9}');
INSERT INTO mixtures (event_id, stage_run_id, method, budget_tokens, domain, weight, tokens)
VALUES ('mx1', 'sr-fit', 'ddo', 1000000000, 'web', 0.7, 1), ('mx1', 'sr-fit', 'ddo', 1000000000, 'code', 0.3, 1);
UPDATE stage_runs SET reason = 'parameter ''k'' changed (0 -> 1)',
       resources = '{"threads": 4, "gpu": 1, "device_memory_bytes": 2147483648, "isolate": 0, "executor": "local"}';
INSERT INTO stage_logs (event_id, stage_run_id, seq, level, message, at)
SELECT 'l-' || g || '-' || k || '-' || n, 'sr-' || g || '-' || k, n, 'info', 'step ' || n || ' of stage ' || k,
       timestamptz '2026-01-01' + g * interval '1 minute'
  FROM generate_series(1, 9999) g, generate_series(1, 3) k, generate_series(1, 30) n;
INSERT INTO stage_logs (event_id, stage_run_id, seq, level, message, at)
SELECT 'l-10000-' || k || '-' || n, 'sr-10000-' || k, n, CASE WHEN n = 2001 THEN 'warn' ELSE 'info' END,
       CASE WHEN n = 2001 THEN '512 more log lines dropped' ELSE 'step ' || n || ': loss ' || (4 - n / 1000.0) END, now()
  FROM generate_series(1, 3) k, generate_series(1, 2001) n;
ANALYZE runs, stage_runs, artifacts, stage_io, metrics, mixtures, stage_logs;
EOF
printf 'loaded 10,000 runs, 30,001 stage runs, 905,913 log lines, 1,000,000 metric points in %.1f s\n' "$(echo "$(date +%s.%N) - $t0" | bc)"
"$SM" serve --listen 127.0.0.1:0 >"$WS/serve.out" 2>"$WS/serve.err" &
SPID=$!
for _ in $(seq 1 100); do grep -q "^serving on port" "$WS/serve.out" 2>/dev/null && break; sleep 0.1; done
URL="http://127.0.0.1:$(sed -n 's/^serving on port //p' "$WS/serve.out")"
mem() { awk '/^VmRSS|^VmHWM/ {printf "%s %.1f MiB  ", $1, $2 / 1024}' "/proc/$SPID/status"; echo; }
echo "server memory after start: $(mem)"
page() { # label path
  local i out
  for i in 1 2 3 4 5; do curl -s -o /dev/null -w '%{time_starttransfer} %{time_total} %{size_download} %{http_code}\n' "$URL$2"; done >"$WS/t"
  out=$(sort -n -k2 "$WS/t" | sed -n 3p)
  set -- "$1" $out
  printf '%-44s ttfb %7.1f ms  full %7.1f ms  %8d bytes  (HTTP %s)\n' "$1" "$(echo "$2 * 1000" | bc)" "$(echo "$3 * 1000" | bc)" "$4" "$5"
}
echo "median of 5 requests, one client:"
page "runs, first page (50)" /runs
page "runs, page at depth 9,950 (keyset)" "/runs?before=run-51"
page "runs, failed only" "/runs?status=failed"
page "runs, pipeline filter + 500 per page" "/runs?pipeline=pipe-3&limit=500"
page "runs JSON (500)" "/api/runs?limit=500"
page "a run (failed, 3 stages, log tails of 2,001)" /runs/run-10000
page "a run JSON" /api/runs/run-10000
page "a stage's log, 500 lines after 1,000" "/log/sr-10000-3?after=1000"
page "a stage's log JSON, 2,000 lines" "/api/log/sr-10000-3?limit=2000"
page "AutoScale (fit, weights)" "/autoscale?run=run-10000"
page "lineage of a stage run" /lineage/stage/sr-10000-3
page "schedules" /schedules
page "metric, 1,000,000 points (1000 buckets)" "/metrics?stage_run=sr-10000-2&name=train_loss"
page "metric JSON, 1,000,000 points" "/api/metrics?stage_run=sr-10000-2&name=train_loss"
page "metric, 1,000,000 points x 2 overlaid" "/metrics?stage_run=sr-10000-2&stage_run=sr-10000-2&name=train_loss"
echo "server memory after the pages: $(mem)"
pids=()
start=$(date +%s.%N)
for i in $(seq 1 20); do for u in /runs /autoscale "/metrics?stage_run=sr-10000-2&name=train_loss" /runs/run-10000; do
  curl -s -o /dev/null "$URL$u" & pids+=($!); done; done
wait "${pids[@]}"
printf '80 concurrent requests (20 each of runs, AutoScale, 1M-point metric, a run): all answered in %.2f s\n' \
  "$(echo "$(date +%s.%N) - $start" | bc)"
echo "server memory after concurrency: $(mem)"
if command -v chromium >/dev/null; then
  chrome() { local p; p=$(mktemp -d "$WS/prof.XXXXXX"); local s; s=$(date +%s.%N)
    timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
      --disable-component-update --disable-sync --user-data-dir="$p" --dump-dom "$1" >"$WS/dom" 2>/dev/null
    echo "$(date +%s.%N) - $s" | bc; }
  base=$(chrome about:blank); base2=$(chrome about:blank); base=$(echo "if ($base < $base2) $base else $base2" | bc)
  for u in "/metrics?stage_run=sr-10000-2&name=train_loss" /runs /autoscale?run=run-10000; do
    t=$(chrome "$URL$u")
    printf 'chromium: %-48s %6.0f ms beyond its start-up (%.0f ms on about:blank); DOM %d bytes\n' "$u" \
      "$(echo "($t - $base) * 1000" | bc)" "$(echo "$base * 1000" | bc)" "$(wc -c <"$WS/dom")"
  done
else
  echo "chromium: not installed, browser figures skipped (apt-get install chromium)"
fi
