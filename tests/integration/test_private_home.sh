#!/usr/bin/env bash
# Root in a private (0700) folder, like a clone in /root (issue 14, item 3): a pipeline runs with its
# lineage in the embedded PostgreSQL, although the server's OS user cannot enter the folder. The cluster
# lives where that user reaches it, and only it (and root); the folder's permissions are not loosened.
source "$(dirname "$0")/../lib.sh"
export SCALEMIX_PLUGIN_PATH="$SM_BUILD/tests/plugins"
unset SCALEMIX_DB SCALEMIX_DB_RO PGHOST PGDATABASE PGSERVICE SCALEMIX_HOME
home=$(mktemp -d /tmp/sm-private.XXXXXX)
chmod 700 "$home"
at_exit "rm -rf '$home'"
cd "$home"
ws="$home/.scalemix"
at_exit "cd '$home' && '$SCALEMIX' db stop"
cat >p.lua <<'LUA'
local sm = require "scalemix"
local a = sm.stage("sm_test_echo", { value = 3, text = "private" })
print("double", a.result.double)
LUA
out=$("$SCALEMIX" run p.lua 2>"$TMP_WS/run.err"); rc=$?
check_eq "the pipeline runs in a 0700 folder with the embedded database" "$rc" 0
[ $rc -eq 0 ] || sed 's/^/    /' "$TMP_WS/run.err"
check_eq "its result" "$out" "double	6"
check_eq "its lineage is in the database" "$("$SCALEMIX" sql -XAt -c "select r.status, count(s.*) from runs r join stage_runs s using (run_id) group by r.status")" "succeeded|1"
check_eq "the folder is still private" "$(stat -c %a "$home")" 700
check "history shows the run" bash -c "'$SCALEMIX' history | grep -q succeeded"
data=$("$SCALEMIX" db status | sed -n 's/^running: data \([^,]*\),.*/\1/p')
check "db status names the cluster" test -n "$data"
if [ "$(id -u)" = 0 ]; then
  cluster=$(dirname "$data")
  at_exit "cd '$home' && '$SCALEMIX' db stop; rm -rf '$cluster'"
  check "as root, the cluster is outside the private folder" bash -c "[[ '$cluster' == /var/lib/scalemix/* ]]"
  check_eq "... the server user's alone" "$(stat -c '%a %U' "$cluster")" "700 $(stat -c %U "$data")"
  check "... not root's" test "$(stat -c %U "$data")" != root
  check "the credentials stay in the workspace, root's" test "$(stat -c '%a %U' "$ws/pg/auth")" == "700 root"
else
  check_eq "as a user, the cluster is in the workspace" "$data" "$ws/pg/data"
fi
# Stopped and started again, the same cluster is found (its lineage is still there).
"$SCALEMIX" db stop >/dev/null
check_eq "after a restart the lineage is still there" "$("$SCALEMIX" sql -XAt -c "select count(*) from runs")" 1

# `scalemix db remove --yes` deletes this workspace's cluster (outside it too) and nothing of another workspace.
"$SCALEMIX" db remove >/dev/null 2>&1; check_eq "db remove without --yes exits 2" $? 2
check "... and removes nothing" test -e "$data/PG_VERSION"
other=$(mktemp -d /tmp/sm-other-ws.XXXXXX)
at_exit "rm -rf '$other'"
(cd "$other" && "$SCALEMIX" db start >/dev/null 2>&1)
at_exit "cd '$other' && '$SCALEMIX' db stop"
odata=$(cd "$other" && "$SCALEMIX" db status | sed -n 's/^running: data \([^,]*\),.*/\1/p')
at_exit "rm -rf '$(dirname "$odata")'"
out=$("$SCALEMIX" db remove --yes); rc=$?
check_eq "db remove --yes exits 0" "$rc" 0
check "it says what it removed" grep -q "^removed .*$(dirname "$data")" <<<"$out"
check "the cluster is gone" test ! -e "$data"
[ "$(id -u)" = 0 ] && check "as root, its folder under /var/lib/scalemix too" test ! -e "$(dirname "$data")"
check "the credentials are gone" test ! -e "$ws/pg/auth"
check "another workspace's cluster is untouched and running" bash -c "cd '$other' && '$SCALEMIX' db status | grep -q '^running: data $odata'"
(cd "$other" && "$SCALEMIX" db stop >/dev/null)
out=$("$SCALEMIX" db remove --yes); check_eq "removing again: nothing to remove" "$out" "no embedded server to remove"
out=$("$SCALEMIX" run p.lua 2>/dev/null); check_eq "the next run makes a fresh cluster" "$out" "double	6"
check_eq "... with only its own run" "$("$SCALEMIX" sql -XAt -c "select count(*) from runs")" 1
finish
