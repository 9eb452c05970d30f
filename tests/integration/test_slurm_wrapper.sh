#!/usr/bin/env bash
# The Slurm command wrapper (core/engine/sm_slurm.c) against a real single-node cluster: a job array of
# three tasks is seen pending/running, one exits 3 and one is scancelled, and each reports Slurm's reason;
# unknown job ids and refused submissions come back as states and messages, not crashes.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../slurm_lib.sh"
slurm_start
out=$("$SM_BUILD/tests/test_slurm" --cluster "$SLURM_TEST_DIR" 2>&1)
rc=$?
echo "$out"
check_eq "wrapper tests against the cluster exit 0" "$rc" 0
finish
