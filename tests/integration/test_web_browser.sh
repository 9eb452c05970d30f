#!/usr/bin/env bash
# The pages in a real browser: Debian's headless chromium loads the runs page, a failed run's page, a running
# run's page (Slurm state, log tail, after its polling script ran), a stage's log and the AutoScale page from `scalemix serve`, the test checks what the DOM shows (--dump-dom) and keeps PNG
# screenshots under $SM_BUILD/web-screenshots. Chromium is installed (as root) when missing; a test that
# cannot get it fails.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/web_lib.sh"
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >"$TMP_WS/apt.log" 2>&1
  fi
  command -v chromium >/dev/null || { fail "chromium is missing and could not be installed (as root: apt-get install -y chromium)"; finish; }
fi
web_record
web_start
shots="$SM_BUILD/web-screenshots"
mkdir -p "$shots"
browse() { # what url [extra flags]: dumps the DOM to $TMP_WS/what.html and a screenshot to $shots/what.png
  local what=$1 url=$2; shift 2
  local profile
  profile=$(mktemp -d "$TMP_WS/profile.XXXXXX")
  local flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
    --disable-component-update --disable-sync --user-data-dir="$profile" --virtual-time-budget=3000 "$@")
  timeout 90 chromium "${flags[@]}" --dump-dom "$url" >"$TMP_WS/$what.html" 2>"$TMP_WS/$what.err"
  rm -f "$shots/$what.png"
  timeout 90 chromium "${flags[@]}" --window-size=1280,1600 --screenshot="$shots/$what.png" "$url" >/dev/null 2>>"$TMP_WS/$what.err"
}
png_ok() { [ -s "$1" ] && [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]; }

browse runs "$URL/runs"
check "browser: runs table rendered" grep -q '<table id="runs">' "$TMP_WS/runs.html"
check_eq "browser: eight runs listed" "$(grep -o '<a href="/runs/[^"]*">' "$TMP_WS/runs.html" | wc -l)" 8
check "browser: markup from the database stayed text" grep -q '&lt;script&gt;alert(1)&lt;/script&gt;' "$TMP_WS/runs.html"
check "browser: runs screenshot" png_ok "$shots/runs.png"

fail_id=$("$SCALEMIX" sql -At -c "select run_id from runs where pipeline = 'fail'" 2>/dev/null)
browse run "$URL/runs/$fail_id"
check "browser: the run's failure box" grep -q 'id="failure"><b>Failed in stage sm_test_echo@fail.lua:2 at fail.lua:2' "$TMP_WS/run.html"
check "browser: the run's stage table" grep -q '<table id="stages">' "$TMP_WS/run.html"
check "browser: run screenshot" png_ok "$shots/run.png"

browse live "$URL/runs/live-run"
check "browser: the live run's script ran without reloading into an error" grep -q 'id="st-run">running' "$TMP_WS/live.html"
check "browser: the live run's Slurm state after the script's update" grep -q 'id="sx-live-train">pending on slurm (Resources), job 4242_1</div>' "$TMP_WS/live.html"
check_eq "browser: the live run's log tail, 50 lines" "$(sed -n '/id="lt-live-train"/,/<\/pre>/p' "$TMP_WS/live.html" | grep -c 'step [0-9]* loss\|alert(3)')" 50
check "browser: the log's markup stayed text" grep -q '&lt;script&gt;alert(3)&lt;/script&gt;' "$TMP_WS/live.html"
check "browser: live run screenshot" png_ok "$shots/live.png"
browse log "$URL/log/live-train?limit=60"
check "browser: the whole log page" grep -q '<a id="next" href="/log/live-train?after=' "$TMP_WS/log.html"

browse autoscale "$URL/autoscale"
check_eq "browser: AutoScale figures drawn inline" "$(grep -o '<figure id="[a-z0-9-]*"><svg' "$TMP_WS/autoscale.html" | wc -l)" 4
check "browser: fit legend" grep -q 'other exact interpolant' "$TMP_WS/autoscale.html"
check "browser: speed-up table" grep -q '+31.0%' "$TMP_WS/autoscale.html"
check "browser: AutoScale screenshot" png_ok "$shots/autoscale.png"

# With a token: a first visit with ?token= sets the cookie; the browser then needs nothing more.
kill "$WEB_PID"; wait "$WEB_PID" 2>/dev/null
printf '0123456789abcdef-browser\n' >"$TMP_WS/token"
web_start --token-file "$TMP_WS/token"
browse denied "$URL/runs"
check "browser: without the token the page is refused" grep -q '401: a token is required' "$TMP_WS/denied.html"
browse granted "$URL/runs?token=0123456789abcdef-browser"
check "browser: with the token the page shows" grep -q '<table id="runs">' "$TMP_WS/granted.html"
echo "screenshots: $shots/runs.png $shots/run.png $shots/live.png $shots/log.png $shots/autoscale.png"
finish
