#!/usr/bin/env bash
# OpenMP threads wait passively unless the user chose: scalemix restarts itself with OMP_WAIT_POLICY=passive
# when neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT is set, and leaves the user's values alone. libgomp's own
# report (OMP_DISPLAY_ENV=verbose, printed when it loads) shows what the running program's OpenMP uses.
source "$(dirname "$0")/../lib.sh"
cd "$TMP_WS"
# The spin count libgomp settled on in the last process image that printed it (the one that ran main).
spin() { env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT OMP_DISPLAY_ENV=verbose "$@" "$SCALEMIX" version 2>&1 >/dev/null |
         grep "GOMP_SPINCOUNT = " | tail -1 | tr -d " '"; }
blocks() { env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT OMP_DISPLAY_ENV=true "$@" "$SCALEMIX" version 2>&1 >/dev/null |
           grep -c "OPENMP DISPLAY ENVIRONMENT BEGIN"; }

check_eq "unset: the program runs with passive waits (spin count 0)" "$(spin)" "GOMP_SPINCOUNT=0"
check_eq "unset: libgomp loaded twice (the restart)" "$(blocks)" 2
check_eq "OMP_WAIT_POLICY=active is kept" "$(spin OMP_WAIT_POLICY=active)" "GOMP_SPINCOUNT=30000000000"
check_eq "OMP_WAIT_POLICY=active: no restart" "$(blocks OMP_WAIT_POLICY=active)" 1
check_eq "GOMP_SPINCOUNT=1234 is kept" "$(spin GOMP_SPINCOUNT=1234)" "GOMP_SPINCOUNT=1234"
check_eq "GOMP_SPINCOUNT set: no restart" "$(blocks GOMP_SPINCOUNT=1234)" 1

# What the program and its stages see in the environment; the command line and the output pass through once.
printf 'print("policy", os.getenv("OMP_WAIT_POLICY"))\n' > env.lua
out=$(env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT "$SCALEMIX" run --db none -q env.lua 2>&1)
check_eq "unset: the script sees OMP_WAIT_POLICY=passive" "$out" "policy	passive"
out=$(env -u GOMP_SPINCOUNT OMP_WAIT_POLICY=active "$SCALEMIX" run --db none -q env.lua 2>&1)
check_eq "the user's OMP_WAIT_POLICY reaches the script" "$out" "policy	active"
out=$(env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT "$SCALEMIX" version)
[[ "$out" == "scalemix "* && $(printf '%s\n' "$out" | wc -l) == 1 ]]; check_eq "version prints once" $? 0
env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT "$SCALEMIX" frobnicate 2>/dev/null; check_eq "exit codes pass through" $? 2
finish
