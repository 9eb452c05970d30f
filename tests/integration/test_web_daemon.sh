#!/usr/bin/env bash
# `scalemix daemon --serve`: the status pages beside the scheduler on its loop; the daemon still stops on
# SIGTERM; the serve options are checked like `scalemix serve`'s.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/web_lib.sh"
printf 'local sm = require "scalemix"\nsm.stage("sm_test_echo", { value = 1 })\n' >p.lua
"$SCALEMIX" run --quiet p.lua >run.out 2>&1 || echo "FAIL: setup: p.lua did not run"
"$SCALEMIX" schedule add hourly --cron "0 * * * *" --tz Asia/Tokyo "$TMP_WS/p.lua" >/dev/null 2>&1 || echo "FAIL: setup: schedule add"
"$SCALEMIX" daemon --serve --listen 127.0.0.1:0 --poll 1s >daemon.out 2>daemon.err &
dpid=$!
at_exit "kill $dpid"
for _ in $(seq 1 100); do grep -q "serve: http://" daemon.err && break; sleep 0.1; done
URL=$(sed -n 's|.*serve: \(http://[0-9.:]*\)/ .*|\1|p' daemon.err | head -1)
check "the daemon serves" test -n "$URL"
check_eq "runs page beside the scheduler" "$(code "$URL/runs")" 200
check_eq "schedules page shows the daemon's schedule" "$(get "$URL/api/schedules" | python3 -c 'import json,sys; print(json.load(sys.stdin)["schedules"][0]["tz"])')" Asia/Tokyo
check "the scheduler still heartbeats" bash -c "sleep 1.5; \"$SCALEMIX\" sql -At -c 'select count(*) from schedule_daemons where stopped_at is null' | grep -q '^1$'"
kill -TERM $dpid
for _ in $(seq 1 100); do kill -0 $dpid 2>/dev/null || break; sleep 0.1; done
check "SIGTERM stops the daemon and its pages" bash -c "! kill -0 $dpid 2>/dev/null"
wait $dpid; check_eq "and it exits 0" "$?" 0
check_eq "--listen without --serve is a usage error" "$("$SCALEMIX" daemon --listen 127.0.0.1:0 >/dev/null 2>&1; echo $?)" 2
out=$("$SCALEMIX" daemon --serve --listen 0.0.0.0:0 2>&1); rc=$?
check "off loopback without a token: refused" test "$rc" -ne 0
check "and says why" grep -q "needs --token" <<<"$out"
finish
