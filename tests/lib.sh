# tests/lib.sh - helpers for integration tests (bash). Source it, call `check NAME CMD...` or
# `check_eq NAME GOT WANT`, and end with `finish`. SCALEMIX is the engine binary; each test gets a
# private workspace in $TMP_WS (removed at exit).
set -u
SM_ROOT=${SM_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
SM_BUILD=${SM_BUILD:-$SM_ROOT/build}
SCALEMIX="$SM_BUILD/scalemix"
TMP_WS=$(mktemp -d /tmp/sm-it.XXXXXX)
chmod 755 "$TMP_WS"
export SCALEMIX_HOME="$TMP_WS/ws"
_failures=0
_cleanups=()
on_exit() { for c in "${_cleanups[@]}"; do eval "$c" >/dev/null 2>&1; done; [ -n "${SM_KEEP_TMP:-}" ] || rm -rf "$TMP_WS"; }
trap on_exit EXIT
# Runs cmd when the test ends (before the workspace is removed).
at_exit() { _cleanups=("$1" "${_cleanups[@]}"); }
pass() { echo "PASS: $1"; }
fail() { echo "FAIL: $1${2:+ ($2)}"; _failures=$((_failures + 1)); }
skip() { echo "SKIP: $1 ($2)"; }
check() { local name=$1; shift; if "$@"; then pass "$name"; else fail "$name" "command failed: $*"; fi; }
check_eq() { if [ "$2" == "$3" ]; then pass "$1"; else fail "$1" "got '$2', want '$3'"; fi; }
finish() { [ "$_failures" -eq 0 ]; exit $?; }
# The AutoScale miniature's corpus in ./corpus: three small domains (code, legal, config) from text every
# Debian machine has; documents are separated by a form-feed line, each source file is one document.
autoscale_corpus() {
  mkdir -p corpus/code corpus/legal corpus/config
  doc_files() { for f in "$@"; do [ -f "$f" ] && { cat "$f"; printf '\n\f\n'; }; done; }
  doc_files $(ls /usr/lib/python3.11/*.py | sort | head -40) > corpus/code/stdlib.txt
  doc_files $(ls /usr/share/common-licenses/* | sort) > corpus/legal/licenses.txt
  doc_files $(ls /etc/*.conf /usr/share/doc/*/copyright 2>/dev/null | sort | head -80) > corpus/config/etc.txt
}
