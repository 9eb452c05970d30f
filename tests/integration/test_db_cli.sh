#!/usr/bin/env bash
# The db commands against a real embedded PostgreSQL in a private workspace: db start/status/stop/dsn,
# concurrent starts, `sql` as the read-only role, `history`, no password on any command line, and the five
# example queries of the README (lineage section) on a small recorded pipeline.
source "$(dirname "$0")/../lib.sh"

# The engine binary once it dispatches the db commands; until then the module's driver (same functions).
if [ -x "$SCALEMIX" ] && "$SCALEMIX" db --help >/dev/null 2>&1; then SMDB=("$SCALEMIX"); else SMDB=("$SM_BUILD/tests/sm_db_cli"); fi
DRIVER="$SM_BUILD/tests/sm_db_cli"
unset SCALEMIX_DB PGHOST PGDATABASE PGSERVICE
at_exit "\"${SMDB[0]}\" db stop"

out=$("${SMDB[@]}" db status 2>&1); rc=$?
check_eq "status before first use exits 3" "$rc" 3
check "status says nothing was created" grep -q "no embedded server" <<<"$out"

out=$("${SMDB[@]}" db start 2>/dev/null); rc=$?
check_eq "db start" "$rc" 0
check "db start reports running" grep -q "^running" <<<"$out"
check "the socket is inside the workspace" grep -q "socket $SCALEMIX_HOME/pg/run" <<<"$out"
check "the server listens on no TCP port" bash -c "! grep -q 'listening on IPv' '$SCALEMIX_HOME/pg/log/postgres.log'"
check "data directory belongs to the server user, not root" bash -c "[ \$(stat -c %U '$SCALEMIX_HOME/pg/data') != root ]"
nmig=$(ls "$SM_ROOT"/migrations/[0-9][0-9][0-9]_*.sql | wc -l)
check_eq "every migration recorded" "$("${SMDB[@]}" sql -At -c "select count(*) from schema_migrations")" "$nmig"
out=$("${SMDB[@]}" db migrate 2>/dev/null)
check "migrating twice applies nothing" grep -q "(0 migrations applied now)" <<<"$out"

# Two engines starting at once on a fresh workspace: one initdb, one server, each migration once.
ws2="$TMP_WS/ws2"
at_exit "SCALEMIX_HOME='$ws2' \"${SMDB[0]}\" db stop"
SCALEMIX_HOME="$ws2" "${SMDB[@]}" db start >"$TMP_WS/a.out" 2>&1 & a=$!
SCALEMIX_HOME="$ws2" "${SMDB[@]}" db start >"$TMP_WS/b.out" 2>&1 & b=$!
wait $a; ra=$?; wait $b; rb=$?
check_eq "concurrent starts both succeed" "$ra$rb" "00"
check_eq "concurrent starts: each migration applied once" \
  "$(SCALEMIX_HOME="$ws2" "${SMDB[@]}" sql -At -c "select count(*), count(distinct version) from schema_migrations")" "$nmig|$nmig"
check_eq "concurrent starts: one initdb" "$(cat "$TMP_WS/a.out" "$TMP_WS/b.out" | grep -c 'creating the embedded')" 1
SCALEMIX_HOME="$ws2" "${SMDB[@]}" db stop >/dev/null 2>&1

# ---- a small recorded pipeline: tokenize -> two proxy trainings -> fit -> mixture -> final training ----
seq=0; run=""
sha() { printf %s "$1" | sha256sum | cut -c1-64; }
ev() { # type json-fields
  seq=$((seq + 1))
  printf '{"type":"%s","run_id":"%s","seq":%d,"event_id":"%s/%d",%s}\n' "$1" "$run" "$seq" "$run" "$seq" "$2"
}
t="2026-11-24T10:00:00Z"
run_start() { ev run_start "\"pipeline\":\"autoscale\",\"script_path\":\"p.lua\",\"script_sha256\":\"ab\",\"params\":{},\"trigger\":\"manual\",\"nominal_time\":null,\"schedule\":null,\"parent_run_id\":null,\"started_at\":\"$1\",\"host\":\"h\""; }
stage() { ev stage_start "\"stage_run_id\":\"$1\",\"stage\":\"$2\",\"plugin\":\"$2\",\"plugin_version\":\"1\",\"plugin_sha256\":\"x\",\"cache_key\":\"k-$1\",\"params\":{},\"reused\":false,\"attempt\":1,\"started_at\":\"$t\""; }
stage_end() { ev stage_end "\"stage_run_id\":\"$1\",\"status\":\"succeeded\",\"finished_at\":\"$t\",\"error\":null,\"result\":null"; }
art() { ev artifact "\"artifact_id\":\"$(sha "$1")\",\"kind\":\"$2\",\"name\":\"$1\",\"path\":\"/ws/$1\",\"bytes\":10,\"produced_by\":${3:-null},\"meta\":{},\"created_at\":\"$t\""; }
io() { ev io "\"stage_run_id\":\"$1\",\"artifact_id\":\"$(sha "$2")\",\"direction\":\"$3\",\"name\":\"$2\""; }
metric() { ev metric "\"stage_run_id\":\"$1\",\"name\":\"$2\",\"step\":$3,\"domain\":${4:-null},\"value\":$5,\"recorded_at\":\"$t\""; }
{
  run=old-run; seq=0
  run_start "2026-11-23T10:00:00Z"
  ev run_end "\"status\":\"failed\",\"finished_at\":\"2026-11-23T10:05:00Z\",\"error\":\"proxy diverged\""
  run=new-run; seq=0
  run_start "2026-11-24T10:00:00Z"
  art raw corpus
  stage s-tok tokenize; io s-tok raw in; art shard shard '"s-tok"'; io s-tok shard out; stage_end s-tok
  for p in 1 2; do
    stage s-p$p proxy_train; io s-p$p shard in
    metric s-p$p val_loss 1 '"web"' 4.$p; metric s-p$p val_loss 2 '"web"' 3.$p
    art model-p$p model "\"s-p$p\""; io s-p$p model-p$p out; stage_end s-p$p
  done
  stage s-fit fit; io s-fit model-p1 in; io s-fit model-p2 in
  ev fit '"stage_run_id":"s-fit","domain":"web","a":2.0,"b":0.3,"c":1.5,"rmse":0.01'
  ev fit '"stage_run_id":"s-fit","domain":"code","a":1.0,"b":0.2,"c":1.2,"rmse":0.02'
  art fitres fit '"s-fit"'; io s-fit fitres out; stage_end s-fit
  stage s-mix mixture; io s-mix fitres in
  ev mixture '"stage_run_id":"s-mix","method":"autoscale","budget_tokens":1000000000,"entries":[{"domain":"web","weight":0.6,"tokens":600000000},{"domain":"code","weight":0.4,"tokens":400000000}]'
  ev mixture '"stage_run_id":"s-mix","method":"autoscale","budget_tokens":10000000000,"entries":[{"domain":"web","weight":0.55,"tokens":5500000000},{"domain":"code","weight":0.45,"tokens":4500000000}]'
  art mix mixture '"s-mix"'; io s-mix mix out; stage_end s-mix
  stage s-train train; io s-train mix in; io s-train shard in
  metric s-train train_loss 100 null 3.5; metric s-train train_loss 200 null 3.1
  art final-model model '"s-train"'; io s-train final-model out; stage_end s-train
  ev run_end "\"status\":\"succeeded\",\"finished_at\":\"2026-11-24T11:00:00Z\",\"error\":null"
} >"$TMP_WS/events.jsonl"
nev=$(wc -l <"$TMP_WS/events.jsonl")
out=$("$DRIVER" ingest "$TMP_WS/events.jsonl" 2>/dev/null)
check_eq "events ingested through the async sink" "$out" "emitted=$nev committed=$nev rejected=0"
out=$("$DRIVER" ingest "$TMP_WS/events.jsonl" 2>/dev/null)
check_eq "replaying the same events is accepted" "$out" "emitted=$nev committed=$nev rejected=0"
check_eq "replay wrote nothing twice" "$("${SMDB[@]}" sql -At -c "select (select count(*) from metrics), (select count(*) from mixtures), (select count(*) from lineage_events)")" "6|4|16"

out=$("${SMDB[@]}" history 2>/dev/null)
check "history lists the new run first" bash -c "sed -n 3p <<<'$out' | grep -q '^new-run .*succeeded'"
check "history lists the failed run" grep -q "old-run .*failed .*proxy diverged" <<<"$out"
check_eq "history -n 1" "$("${SMDB[@]}" history -n 1 --status failed 2>/dev/null | tail -1)" "(1 run)"

sql() { "${SMDB[@]}" sql -At -F ' ' -c "$1" 2>&1; }
# README query 1: runs by status.
check_eq "readme: runs by status" "$(sql "SELECT status, count(*) FROM runs GROUP BY status ORDER BY status")" \
  "$(printf 'failed 1\nsucceeded 1')"
# README query 2: the mixture by budget for a pipeline.
check_eq "readme: mixture by budget" "$(sql "SELECT m.budget_tokens, m.domain, m.weight FROM mixtures m
  JOIN stage_runs s USING (stage_run_id) JOIN runs r USING (run_id)
  WHERE r.pipeline = 'autoscale' ORDER BY m.budget_tokens, m.weight DESC")" \
  "$(printf '1000000000 web 0.6\n1000000000 code 0.4\n10000000000 web 0.55\n10000000000 code 0.45')"
# README query 3: the proxy runs behind a fit.
check_eq "readme: proxy runs behind a fit" "$(sql "SELECT DISTINCT u.run_id, u.stage_run_id, u.stage FROM fits f
  CROSS JOIN LATERAL stage_upstream(f.stage_run_id) u
  WHERE f.stage_run_id = 's-fit' AND u.stage = 'proxy_train' ORDER BY 2")" \
  "$(printf 'new-run s-p1 proxy_train\nnew-run s-p2 proxy_train')"
# README query 4: the upstream of a trained model.
check_eq "readme: upstream of a trained model" "$(sql "SELECT depth, kind, coalesce(stage, '-') FROM lineage_up('$(sha final-model)') ORDER BY depth, kind")" \
  "$(printf '0 model train\n1 mixture mixture\n1 shard tokenize\n2 corpus -\n2 fit fit\n3 model proxy_train\n3 model proxy_train')"
# README query 5: the metrics of the latest run.
check_eq "readme: metrics of the latest run" "$(sql "SELECT s.stage, l.name, coalesce(l.domain, '-'), l.step, l.value
  FROM latest_metrics l JOIN stage_runs s USING (stage_run_id)
  WHERE s.run_id = (SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1) ORDER BY 1, 2, 3")" \
  "$(printf 'proxy_train val_loss web 2 3.1\nproxy_train val_loss web 2 3.2\ntrain train_loss - 200 3.1')"
check_eq "lineage events are OpenLineage RunEvents" "$(sql "SELECT event->>'eventType', event->'job'->>'name', jsonb_array_length(event->'outputs') FROM lineage_events WHERE event->>'eventType' = 'COMPLETE' AND event->'job'->>'name' = 'autoscale.train'")" "COMPLETE autoscale.train 1"

# The read-only role.
check "sql cannot insert" bash -c "! \"${SMDB[0]}\" sql -c \"insert into runs (run_id, event_id) values ('x', 'x')\" >/dev/null 2>&1"
check "sql cannot drop" bash -c "! \"${SMDB[0]}\" sql -c 'drop table metrics' >/dev/null 2>&1"
check "sql cannot write even after lifting read-only" bash -c "! \"${SMDB[0]}\" sql -c 'set default_transaction_read_only = off' -c \"delete from runs\" 2>&1 | grep -q 'DELETE'"
check_eq "sql runs as scalemix_ro" "$(sql "select current_user")" "scalemix_ro"

# A DSN with a password: never on a command line we start, never in our messages. (The embedded server's
# passwords, from its passfiles, given as a DSN would give them.)
sock="$SCALEMIX_HOME/pg/run"
pw=$(cut -d: -f5 "$SCALEMIX_HOME/pg/auth/scalemix.pgpass")
ropw=$(cut -d: -f5 "$SCALEMIX_HOME/pg/auth/scalemix_ro.pgpass")
export SCALEMIX_DB="host=$sock port=5432 dbname=scalemix user=scalemix password=$pw"
export SCALEMIX_DB_RO="host=$sock port=5432 dbname=scalemix user=scalemix_ro password=$ropw"
"${SMDB[@]}" sql -At -c "select pg_sleep(1.5)" >/dev/null 2>&1 & s=$!
sleep 0.8
check "no password in ps while psql runs" bash -c "! ps -eo args | grep -q '[${ropw:0:1}]${ropw:1}\\|[${pw:0:1}]${pw:1}'"
wait $s
check_eq "psql ran with the password DSN" "$("${SMDB[@]}" sql -At -c "select 1" 2>&1)" 1
out=$("${SMDB[@]}" db status 2>&1)
check "db status with a given DSN" grep -q "^reachable: .*schema version" <<<"$out"
check "db status masks the password" bash -c "! grep -q $pw <<<'$out'"
check "db dsn masks the password" bash -c "\"${SMDB[0]}\" db dsn | grep -q \"password='\*\*\*\*\*\*\*\*'\""
unset SCALEMIX_DB_RO
bad=$(SCALEMIX_DB="host=/nonexistent port=5432 dbname=x user=u password=hunter2" "${SMDB[@]}" history 2>&1); rc=$?
check_eq "unreachable given server fails" "$rc" 1
check "its message masks the password" bash -c "! grep -q hunter2 <<<'$bad'"
check "db start refuses a given server" bash -c "! \"${SMDB[0]}\" db start 2>/dev/null"
export SCALEMIX_DB=none
check_eq "none disables the database" "$("${SMDB[@]}" db dsn)" "none"
unset SCALEMIX_DB

check_eq "db stop" "$("${SMDB[@]}" db stop 2>&1)" stopped
"${SMDB[@]}" db status >/dev/null 2>&1; rc=$?
check_eq "status after stop exits 3" "$rc" 3
check_eq "sql starts the server on demand" "$("${SMDB[@]}" sql -At -c "select 1" 2>/dev/null)" 1
finish
