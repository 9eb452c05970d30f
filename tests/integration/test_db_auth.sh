#!/usr/bin/env bash
# The embedded server's authentication (issue 14, item 1): every role logs in with its password (SCRAM), so
# the read-only role of `scalemix sql` is a boundary: `scalemix sql -U scalemix_admin` (or -U scalemix) is
# refused, and so is anyone reaching the socket without the workspace's credentials, the server's own OS
# user included. The credentials are private to the workspace's owner. A cluster made with trust by an
# older scalemix (or whose credentials were lost) is upgraded at the next start.
source "$(dirname "$0")/../lib.sh"
unset SCALEMIX_DB SCALEMIX_DB_RO PGHOST PGDATABASE PGSERVICE PGPASSFILE PGPASSWORD
at_exit "'$SCALEMIX' db stop"
"$SCALEMIX" db start >/dev/null 2>"$TMP_WS/start.log"; check_eq "db start" $? 0
sock="$SCALEMIX_HOME/pg/run"
data="$SCALEMIX_HOME/pg/data"
nopass="host=$sock port=5432 dbname=scalemix passfile=/dev/null"

boundary() { # $1: label
  check_eq "$1: sql runs as the read-only role" "$("$SCALEMIX" sql -XAt -c 'select current_user' 2>&1)" scalemix_ro
  out=$("$SCALEMIX" sql -U scalemix_admin -w -XAt -c 'select current_user' 2>&1); rc=$?
  check "$1: sql -U scalemix_admin is refused" test "$rc" -ne 0
  check "$1: ... for want of the admin's password" grep -q 'password' <<<"$out"
  check "$1: sql -U scalemix is refused" bash -c "! '$SCALEMIX' sql -U scalemix -w -XAt -c 'select 1' >/dev/null 2>&1"
  for role in scalemix_admin scalemix scalemix_ro; do
    check "$1: no password, no $role" bash -c "! psql '$nopass user=$role' -w -XAtc 'select 1' >/dev/null 2>&1"
  done
  if [ "$(id -u)" = 0 ]; then # the server's own OS user reaches the socket but has no credentials
    su_user=$(stat -c %U "$data")
    check "$1: the server's OS user ($su_user) cannot log in as the writer" bash -c "! runuser -u '$su_user' -- psql '$nopass user=scalemix' -w -XAtc 'select 1' >/dev/null 2>&1"
  fi
  check_eq "$1: pg_hba.conf asks every role for its password" "$(grep -v '^#' "$data/pg_hba.conf")" "local all all scram-sha-256"
  check_eq "$1: the engine still writes" "$("$SCALEMIX" db migrate 2>&1 | head -c 15)" "schema version "
}
boundary "new cluster"
check_eq "the credentials are the owner's only" "$(stat -c '%a %u' "$SCALEMIX_HOME/pg/auth" "$SCALEMIX_HOME"/pg/auth/* | sort -u | tr '\n' ' ')" "600 $(id -u) 700 $(id -u) "
check "the DSN names a passfile, no password" bash -c "'$SCALEMIX' db dsn | grep -q \"passfile='$SCALEMIX_HOME/pg/auth/scalemix.pgpass'\" && ! '$SCALEMIX' db dsn | grep -q password"

# A cluster made by an older scalemix: trust for everyone, no credentials in the workspace.
"$SCALEMIX" db stop >/dev/null
printf 'local all all trust\nhost all all 127.0.0.1/32 trust\n' >"$data/pg_hba.conf"
rm -rf "$SCALEMIX_HOME/pg/auth"
"$SCALEMIX" db start >/dev/null 2>"$TMP_WS/upgrade.log"; check_eq "db start on a trust cluster" $? 0
check "it says it upgraded the cluster" grep -q "now requires a password of every role" "$TMP_WS/upgrade.log"
boundary "upgraded cluster"
# Credentials lost while the server runs with passwords: set again at the next start.
rm -rf "$SCALEMIX_HOME/pg/auth"
"$SCALEMIX" db start >/dev/null 2>"$TMP_WS/lost.log"; check_eq "db start after losing the credentials" $? 0
check "it says it set them again" grep -q "setting them again" "$TMP_WS/lost.log"
boundary "credentials renewed"
finish
