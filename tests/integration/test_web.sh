#!/usr/bin/env bash
# `scalemix serve` against real runs in the embedded PostgreSQL (tests/integration/web_lib.sh records them):
# every page and its JSON twin, markup from the database escaped, the read-only role, bad input (malformed
# and unknown ids, huge numbers, injection attempts in every argument) answered 400/404 without writing,
# the token rule, and concurrent clients.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/web_lib.sh"
command -v curl >/dev/null || { fail "curl is needed for the HTTP tests (apt-get install curl)"; finish; }
web_record
web_start
check "server started" grep -q "^serving on port [0-9]" "$TMP_WS/serve.out"
jq() { python3 -c "import json,sys; m=json.load(sys.stdin); print($1)"; }
sql() { "$SCALEMIX" sql -At -F ' ' -c "$1" 2>&1; }
counts="select (select count(*) from runs), (select count(*) from stage_runs), (select count(*) from metrics), (select count(*) from schedule_fires), (select count(*) from stage_logs)"
before=$(sql "$counts")

# ---- 1. runs ----
html=$(get "$URL/runs")
check "runs page lists the real runs" grep -q '<td>fail</td>' <<<"$html"
check "runs page shows statuses" bash -c "grep -q 'class=\"st-failed\"' <<<'$(sed "s/'//g" <<<"$html")'"
check "markup in a pipeline name is escaped" grep -q '&lt;script&gt;alert(1)&lt;/script&gt;' <<<"$html"
check "no raw script tag from the database" bash -c "! grep -q '<script>alert' <<<\"\$0\"" "$html"
check_eq "runs JSON: total" "$(get "$URL/runs?format=json" | jq 'm["total"]')" 8
check_eq "runs JSON at /api/runs: newest first" "$(get "$URL/api/runs" | jq 'm["runs"][0]["run_id"]')" \
  "$(sql "select run_id from runs order by started_at desc limit 1")"
check_eq "filter by status" "$(get "$URL/api/runs?status=failed" | jq '" ".join(sorted(r["status"] for r in m["runs"]))')" "failed failed"
check_eq "filter by pipeline" "$(get "$URL/api/runs?pipeline=nightly" | jq 'len(m["runs"])')" 2
check_eq "trigger shown" "$(get "$URL/api/runs?pipeline=nightly" | jq '" ".join(sorted(r["trigger"] for r in m["runs"]))')" "backfill schedule"
p1=$(get "$URL/api/runs?limit=4"); nb=$(jq 'm["next_before"]' <<<"$p1")
p2=$(get "$URL/api/runs?limit=4&before=$nb")
check_eq "keyset paging: page 2 follows page 1" "$(python3 -c "import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2]);
ids=[r['run_id'] for r in a['runs']+b['runs']]; print(len(ids), len(set(ids)))" "$p1" "$p2")" "8 8"
check_eq "stage counts of the reusing run" "$(get "$URL/api/runs?pipeline=p" | jq '" ".join("%d/%d" % (r["ran"], r["reused"]) for r in m["runs"])')" "0/2 2/0"

# ---- 2. a run ----
fail_id=$(sql "select run_id from runs where status = 'failed' and pipeline = 'fail' limit 1")
html=$(get "$URL/runs/$fail_id")
check "run page: the failure names the script line" grep -q 'Failed in stage sm_test_echo@fail.lua:2 at fail.lua:2' <<<"$html"
check_eq "run JSON: failure" "$(get "$URL/runs/$fail_id?format=json" | jq 'm["failure"]["script_line"].split("/")[-1]')" "fail.lua:2"
reuse_id=$(get "$URL/api/runs?pipeline=p" | jq 'm["runs"][0]["run_id"]')
check "run page: reused stages say where their result came from" grep -q '<td class="why">cached result of stage run [0-9a-f]\{8\}</td>' <<<"$(get "$URL/runs/$reuse_id")"
check_eq "run JSON: stages recorded without reasons say so, nothing inferred" "$(get "$URL/api/runs/as-run" | jq '"%s|%s|%s" % (m["stages"][0]["reason"], m["stages"][0]["why"], m["stages"][0]["resources_text"])')" \
  "None|ran (reason not recorded)|not recorded"
check_eq "run JSON: stage parameters" "$(get "$URL/api/runs/$reuse_id" | jq 'm["stages"][0]["params"]["value"]')" 1
html=$(get "$URL/runs/xss-run")
check "stage names and errors escaped" grep -q '&lt;img src=x onerror=alert(2)&gt;' <<<"$html"
check "error text escaped" grep -q 'stage &lt;b&gt;boom&lt;/b&gt; failed: &quot;quoted&quot; &amp; &#39;single&#39;' <<<"$html"
html=$(get "$URL/runs/live-run")
check "a running run polls for live progress" grep -q "setTimeout(tick" <<<"$html"
check "a running stage shows its latest metric" grep -q 'train_loss 3.25 @ 40' <<<"$html"
check_eq "run JSON: progress of the running stage" "$(get "$URL/api/runs/live-run" | jq 'm["stages"][0]["progress"][0]["value"]')" 3.25
check "the recorded reason, escaped" grep -q '<td class="why">parameter &#39;budget&#39; changed (1000000 -&gt; 2000000)</td>' <<<"$html"
check "resources: threads, GPU, device memory, executor, Slurm job" grep -q '<td>4 threads, GPU with 2.0 GiB device memory, slurm, Slurm job 4242_1</td>' <<<"$html"
check "a stage pending on Slurm says so and why" grep -q 'id="sx-live-train">pending on slurm (Resources), job 4242_1</div>' <<<"$html"
tail_html=$(sed -n '/<pre class="log" id="lt-live-train">/,/<\/pre>/p' <<<"$html")
check_eq "the log tail: the last 50 lines" "$(grep -c '<span class="lv-' <<<"$tail_html")" 50
check "the log tail starts at line 71 of 121" grep -q '<pre class="log" id="lt-live-train"><span class="lv-info">09:01:11 info step 71 loss 3.290</span>$' <<<"$tail_html"
check "the log tail ends with the last line, escaped" grep -q '09:02:00 error &lt;script&gt;alert(3)&lt;/script&gt; &amp; &#39;last&#39;</span>$' <<<"$tail_html"
check "the log tail counts the lines and links the whole log" grep -q '<span id="ln-live-train">121</span> lines, the last 50 here; <a href="/log/live-train">the whole log</a>' <<<"$html"
check_eq "run JSON: reason, resources, state, log" "$(get "$URL/api/runs/live-run" | jq '"%s|%d|%s|%s|%d|%d|%s" % (m["stages"][0]["reason"][:20], m["stages"][0]["resources"]["threads"], m["stages"][0]["state"]["state"], m["stages"][0]["job_id"], m["stages"][0]["log_lines"], len(m["stages"][0]["log_tail"]), m["stages"][0]["log_tail"][-1]["at"])')" \
  "parameter 'budget' c|4|pending|4242_1|121|50|2026-12-02T09:02:00.000Z"
check "stages without log lines say so" grep -q 'no log lines recorded' <<<"$(get "$URL/runs/$fail_id")"
html=$(get "$URL/log/live-train?limit=50")
check_eq "the whole log, paged: 50 lines" "$(grep -c '<span class="lv-' <<<"$html")" 50
check "the log page links the next lines" grep -q '<a id="next" href="/log/live-train?after=[0-9]*&amp;limit=50">' <<<"$html"
check "the log page is escaped" bash -c "! grep -q '<script>alert(3)' <<<\"\$(curl -s '$URL/log/live-train?limit=2000')\""
check_eq "log JSON: paging by seq reads every line once" "$(python3 - "$URL" <<'PY'
import json, sys, urllib.request
seen, after = [], 0
while after is not None:
    m = json.load(urllib.request.urlopen("%s/api/log/live-train?limit=40&after=%d" % (sys.argv[1], after)))
    seen += [l["seq"] for l in m["lines"]]
    after = m["next_after"]
print(len(seen), len(set(seen)), seen == sorted(seen), m["stage_run"]["log_lines"])
PY
)" "121 121 True 121"
check "finished runs do not poll" bash -c "! curl -s '$URL/runs/$fail_id' | grep -q setTimeout"

# ---- 3. AutoScale ----
html=$(get "$URL/autoscale")
check_eq "AutoScale page draws two fits, weights and curves" "$(grep -o '<figure id="[a-z0-9-]*"><svg' <<<"$html" | wc -l)" 4
check "fit figure is plot's (title, legend)" grep -q 'other exact interpolant' <<<"$html"
check "fit table: flags and noise" bash -c "grep -q 'few_points' <<<\"\$0\" && grep -q 'not measured' <<<\"\$0\"" "$html"
check "speed-up table" grep -q '+31.0%' <<<"$html"
check "speed-up with compare's interval and verdict" grep -q '+12.0%, +44.0%, 3 seeds: significant' <<<"$html"
check_eq "AutoScale JSON" "$(get "$URL/autoscale?run=as-run&format=json" | jq '"%d %d %d" % (len(m["fits"]), len(m["mixtures"]), len(m["comparisons"]))')" "2 3 1"
sm_plot=$("$SCALEMIX" help plot 2>&1 | head -1)
check "the plot stage exists (one code path)" test -n "$sm_plot"

# ---- 4. lineage ----
sid=$(sql "select stage_run_id from stage_runs s join runs r using (run_id) where r.pipeline = 'p' and s.reused = false order by s.started_at desc limit 1")
html=$(get "$URL/lineage/stage/$sid")
check "stage lineage: an SVG graph" grep -q '<svg xmlns="http://www.w3.org/2000/svg" id="graph"' <<<"$html"
check "graph nodes link to their pages" grep -q '<a href="/lineage/artifact/[0-9a-f]\{64\}"><rect' <<<"$html"
art=$(sql "select artifact_id from stage_io where stage_run_id = '$sid' and direction = 'out' limit 1")
check "artifact lineage page" grep -q '<svg xmlns="http://www.w3.org/2000/svg" id="graph"' <<<"$(get "$URL/lineage/artifact/$art")"
check_eq "lineage JSON: upstream reaches the first stage" "$(get "$URL/api/lineage/artifact/$art" | jq 'max(r["depth"] for r in m["upstream"])')" 1

# ---- 5. schedules ----
html=$(get "$URL/schedules")
check "schedules page: next fire in the zone and UTC" grep -qE '2[0-9]{3}-[0-9]{2}-[0-9]{2}T0?2:00:00\+0[12]:00 \([0-9-]+T0[01]:00:00Z\)' <<<"$html"
check_eq "schedules JSON" "$(get "$URL/api/schedules" | jq '"%s %s %d" % (m["schedules"][0]["name"], m["schedules"][0]["tz"], len(m["schedules"][0]["next"]))')" "nightly Europe/Berlin 3"
check "backfills listed" test "$(get "$URL/api/schedules" | jq 'len(m["schedules"][0]["backfills"])')" -ge 1

# ---- 6. metrics ----
m=$(get "$URL/api/metrics?stage_run=as-cmp&name=val_loss&points=100")
check_eq "metric JSON: every point counted" "$(jq 'm["series"][0]["points"]' <<<"$m")" 5000
check "metric downsampled to min/max per bucket" test "$(jq 'len(m["series"][0]["curves"]["web"]["steps"])' <<<"$m")" -le 200
check_eq "the spike survives downsampling" "$(jq 'round(max(m["series"][0]["curves"]["web"]["values"]), 2)' <<<"$m")" 4.3
html=$(get "$URL/metrics?stage_run=as-cmp&stage_run=live-train&name=val_loss")
check "metric page draws the curve" grep -q '<figure id="metric"><svg' <<<"$html"
check_eq "overlay lists both stage runs" "$(grep -o 'class="overlay"' <<<"$html" | wc -l)" 2

# ---- the read-only role ----
check_eq "the server reads as scalemix_ro" "$(sql "select distinct usename from pg_stat_activity where application_name = 'scalemix-serve'")" scalemix_ro

# ---- bad input ----
bad() { # want url [curl args]
  local want=$1 u=$2; shift 2
  check_eq "$want for $u" "$(code "$@" "$URL$u")" "$want"
}
bad 404 /nope
bad 404 "/runs/no-such-run"
bad 400 "/runs/%27%3B%20DROP%20TABLE%20runs%3B--"
bad 400 "/runs/%3Cscript%3E"
bad 400 "/api/runs/x%20y"
bad 400 "/runs?limit=0"
bad 400 "/runs?limit=99999999999999999999999"
bad 400 "/runs?limit=1e3"
bad 400 "/runs?page=99999999999"
bad 404 "/runs?before=not-a-run"
bad 400 "/runs?before=%27%20OR%201%3D1--"
bad 400 "/runs?status=%27%20OR%20%271%27%3D%271"
bad 200 "/runs?pipeline=%27%20OR%201%3D1--"
check_eq "an injected pipeline filter matches nothing" "$(get "$URL/api/runs?pipeline=%27%20OR%201%3D1--" | jq 'm["total"]')" 0
bad 400 "/runs?format=xml"
bad 400 "/lineage/artifact/abc"
bad 400 "/lineage/artifact/$(printf 'A%.0s' {1..64})"
bad 404 "/lineage/artifact/$(printf '0%.0s' {1..64})"
bad 400 "/lineage/stage/%22%3E%3Cx"
bad 404 "/lineage/stage/nope"
bad 404 "/lineage/run/x"
bad 400 "/autoscale?run=%27%3B--"
bad 404 "/autoscale?run=nope"
bad 400 "/metrics?stage_run=as-cmp"
bad 400 "/metrics?stage_run=%27--&name=x"
bad 404 "/metrics?stage_run=nope&name=x"
bad 400 "/metrics?stage_run=as-cmp&name=val_loss&points=99999999999999999999"
bad 400 "/metrics?stage_run=a&stage_run=b&stage_run=c&stage_run=d&stage_run=e&stage_run=f&stage_run=g&stage_run=h&stage_run=i&name=x"
bad 400 "/runs?$(printf 'a%d=1&' $(seq 1 40))"
bad 400 "/schedules?x=%00"
bad 404 "/log/nope"
bad 400 "/log/%27%3B--"
bad 400 "/log/live-train?after=-1"
bad 400 "/log/live-train?after=1e3"
bad 400 "/log/live-train?limit=0"
bad 400 "/log/live-train?limit=2001"
bad 400 "/log/live-train?level=x"
bad 405 /runs -X POST -d 'x=1'
bad 405 /runs -X DELETE
check_eq "errors as JSON for JSON requests" "$(get "$URL/api/runs/no-such-run" | jq 'm["status"]')" 404
check_eq "nothing was written" "$(sql "$counts")" "$before"
check "the server survived" kill -0 "$WEB_PID"

# ---- concurrent clients ----
pids=()
for i in $(seq 1 24); do
  for u in /runs "/api/runs?limit=500" /autoscale "/metrics?stage_run=as-cmp&name=val_loss" /schedules "/runs/$fail_id"; do
    code "$URL$u" >"$TMP_WS/c.$i.$(tr -c 'a-z' _ <<<"$u")" &
    pids+=($!)
  done
done
wait "${pids[@]}"
check_eq "144 concurrent requests all answered" "$(ls "$TMP_WS"/c.* | wc -l)" 144
check_eq "and all with 200" "$(grep -L '^200$' "$TMP_WS"/c.* | wc -l)" 0
check "the server survived concurrency" kill -0 "$WEB_PID"

# ---- end to end: the engine records a stage's log and why it ran again ----
printf 'local sm = require "scalemix"\nsm.stage("sm_test_echo", { value = 1, log_lines = 3 })\n' >e2e.lua
"$SCALEMIX" run --quiet e2e.lua >e2e1.out 2>&1 || echo "FAIL: e2e.lua did not run ($(tail -3 e2e1.out))"
sed -i 's/value = 1/value = 2/' e2e.lua
"$SCALEMIX" run --quiet e2e.lua >e2e2.out 2>&1 || echo "FAIL: e2e.lua did not run twice ($(tail -3 e2e2.out))"
e2e=$(get "$URL/api/runs?pipeline=e2e" | jq 'm["runs"][0]["run_id"]')
html=$(get "$URL/runs/$e2e")
check "e2e: the re-run says which parameter changed" grep -q '<td class="why">parameter &#39;value&#39; changed (1 -&gt; 2)</td>' <<<"$html"
check "e2e: the stage's log lines on the page" grep -q '<span class="lv-info">[0-9:]\{8\} info line 2</span>' <<<"$html"
check "e2e: the resources the engine gave it" grep -q '<td>1 thread, local</td>' <<<"$html"
check_eq "e2e: JSON of the first run" "$(get "$URL/api/runs/$(get "$URL/api/runs?pipeline=e2e" | jq 'm["runs"][1]["run_id"]')" | jq '"%s|%d|%s" % (m["stages"][0]["reason"], m["stages"][0]["log_lines"], m["stages"][0]["log_tail"][0]["message"])')" \
  "no previous run of this stage|3|line 0"

# ---- the token rule ----
kill "$WEB_PID"; wait "$WEB_PID" 2>/dev/null
out=$("$SCALEMIX" serve --listen 0.0.0.0:0 2>&1); rc=$?
check_eq "off loopback without a token is refused" "$rc" 2
check "and says why" grep -q "needs --token" <<<"$out"
check_eq "a short token is refused" "$("$SCALEMIX" serve --token short >/dev/null 2>&1; echo $?)" 2
check_eq "an unknown option is refused" "$("$SCALEMIX" serve --bogus >/dev/null 2>&1; echo $?)" 2
tok=0123456789abcdef-secret
printf '%s\n' "$tok" >"$TMP_WS/token"
web_start --token-file "$TMP_WS/token"
check_eq "no token: 401" "$(code "$URL/runs")" 401
check_eq "no token on JSON: 401" "$(code "$URL/api/runs")" 401
check_eq "no token on a bad path: 401 first" "$(code "$URL/nope")" 401
check_eq "wrong token: 401" "$(code -H "Authorization: Bearer ${tok}x" "$URL/runs")" 401
check_eq "bearer token: 200" "$(code -H "Authorization: Bearer $tok" "$URL/api/runs")" 200
check_eq "token in the query: 200" "$(code "$URL/runs?token=$tok")" 200
check "the query token sets an HttpOnly cookie" bash -c "curl -s -D - -o /dev/null '$URL/runs?token=$tok' | grep -qi '^Set-Cookie: scalemix_token=.*HttpOnly'"
check_eq "the cookie then suffices" "$(code -b "scalemix_token=$tok" "$URL/autoscale")" 200
kill "$WEB_PID"; wait "$WEB_PID" 2>/dev/null
out=$(SCALEMIX_HOME="$TMP_WS/token-ws" timeout 20 "$SCALEMIX" serve --listen 0.0.0.0:0 --token "$tok" --db "host=/nonexistent dbname=x user=y" 2>&1); rc=$?
check_eq "an unreachable database fails at start" "$rc" 1
finish
