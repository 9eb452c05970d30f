# tests/slurm_lib.sh - a private single-node Slurm cluster for one test (bash). Source it after tests/lib.sh
# and call `slurm_start`: it starts its own munged (own socket and pid file, the machine's key), a slurm.conf
# in a temporary folder with free, non-default ports, slurmctld and slurmd, waits until the node is idle,
# exports SLURM_CONF (every Slurm client command then talks to this cluster only) and registers the stop at
# the test's exit: its jobs are cancelled and its daemons stopped by the pids in their pid files, never by
# name (other clusters may be running). Where Slurm cannot start here (packages missing, not root, a daemon
# that does not come up), slurm_start prints one SKIP line saying exactly why and ends the test with success.
SLURM_TEST_DIR=""

_slurm_skip() {
  skip "slurm cluster" "$1"
  finish
}

# A TCP port nobody listens on, from a range the Slurm defaults (6817-6819) are outside of.
_slurm_free_port() {
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 30000))
    ss -Htln "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; return 0; }
  done
  return 1
}

# Reads a pid file and kills that process with TERM, then KILL after 10 s.
_slurm_kill_pidfile() {
  local f=$1 pid
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
}

slurm_stop() {
  [ -n "$SLURM_TEST_DIR" ] || return 0
  # Jobs first: their processes (slurmstepd) outlive slurmd.
  if [ -s "$SLURM_TEST_DIR/slurmctld.pid" ]; then
    scancel --full --user="$(id -un)" 2>/dev/null
    for _ in $(seq 100); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.1; done
  fi
  _slurm_kill_pidfile "$SLURM_TEST_DIR/slurmd.pid"
  _slurm_kill_pidfile "$SLURM_TEST_DIR/slurmctld.pid"
  _slurm_kill_pidfile "$SLURM_TEST_DIR/munge/munged.pid"
}

# Prints the last lines of the daemons' logs (why a start failed).
_slurm_logs() {
  local f
  for f in "$SLURM_TEST_DIR"/log/*.log "$SLURM_TEST_DIR"/munge/munged.log; do
    [ -f "$f" ] && { echo "--- $f"; tail -n 5 "$f"; }
  done
}

slurm_start() {
  local c missing=""
  for c in slurmctld slurmd sbatch squeue scontrol scancel sinfo munged munge unmunge runuser ss; do
    command -v "$c" >/dev/null 2>&1 || missing="$missing $c"
  done
  [ -z "$missing" ] || _slurm_skip "missing commands:$missing (Debian packages slurm-wlm munge; 'make deps' as root installs them)"
  [ "$(id -u)" = 0 ] || _slurm_skip "not root: slurmd must run as root to start jobs as their users"
  id munge >/dev/null 2>&1 || _slurm_skip "no 'munge' user (the munge package creates it)"
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey -c -k /etc/munge/munge.key >/dev/null 2>&1 && chown munge:munge /etc/munge/munge.key &&
      chmod 0400 /etc/munge/munge.key || _slurm_skip "no /etc/munge/munge.key and 'mungekey -c' could not create it"
  fi

  SLURM_TEST_DIR="$TMP_WS/slurm"
  at_exit slurm_stop
  local d=$SLURM_TEST_DIR host ctld_port slurmd_port
  mkdir -p "$d/state" "$d/spool" "$d/log" "$d/munge"
  chmod 755 "$d" "$d/munge" # munged wants every folder above its socket reachable by all
  chown munge:munge "$d/munge"
  # A munged of our own: the machine's key, a private socket, stopped by its pid file.
  runuser -u munge -- munged --socket="$d/munge/socket" --pid-file="$d/munge/munged.pid" \
    --log-file="$d/munge/munged.log" --seed-file="$d/munge/munged.seed" ||
    _slurm_skip "munged did not start: $(tail -n 1 "$d/munge/munged.log" 2>/dev/null)"
  munge -n -S "$d/munge/socket" | unmunge -S "$d/munge/socket" >/dev/null 2>&1 ||
    _slurm_skip "munged started but 'munge -n | unmunge' fails"

  host=$(hostname -s)
  ctld_port=$(_slurm_free_port) && slurmd_port=$(_slurm_free_port) || _slurm_skip "no free TCP port found"
  [ "$ctld_port" != "$slurmd_port" ] || slurmd_port=$((ctld_port + 1))
  cat >"$d/slurm.conf" <<EOF
ClusterName=smtest$ctld_port
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
AuthInfo=socket=$d/munge/socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd.log
MailProg=/bin/true
ReturnToService=2
MpiDefault=none
NodeName=$host CPUs=$(nproc) RealMemory=8000 State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF="$d/slurm.conf"
  slurmctld -f "$SLURM_CONF" >"$d/log/slurmctld.out" 2>&1 || _slurm_skip "slurmctld did not start: $(_slurm_logs | tr '\n' ' ')"
  slurmd -f "$SLURM_CONF" >"$d/log/slurmd.out" 2>&1 || _slurm_skip "slurmd did not start: $(_slurm_logs | tr '\n' ' ')"
  local state=""
  for _ in $(seq 600); do
    state=$(sinfo -h -o %T 2>/dev/null)
    [ "$state" = idle ] && return 0
    sleep 0.1
  done
  _slurm_skip "node not idle after 60 s (sinfo says '$state'): $(_slurm_logs | tr '\n' ' ')"
}

# Waits until squeue no longer lists job ID (every state but the ended ones), at most $2 seconds (default 60).
slurm_wait_gone() {
  local id=$1 limit=${2:-60}
  for _ in $(seq $((limit * 10))); do
    [ -z "$(squeue -h -j "$id" -o %i 2>/dev/null)" ] && return 0
    sleep 0.1
  done
  return 1
}
