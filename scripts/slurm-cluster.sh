#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, for the Slurm executor's tests and benchmark:
# Debian's slurmctld, slurmd and munge (no systemd, no accounting database), all state in one
# folder, stopped by the PIDs it started.
#
#   scripts/slurm-cluster.sh start DIR   start it; prints `export SLURM_CONF=DIR/slurm.conf`
#   scripts/slurm-cluster.sh stop DIR    stop the daemons started in DIR (SIGTERM, then SIGKILL)
#   scripts/slurm-cluster.sh status DIR  exit 0 when it answers
#
# Client commands (sbatch, squeue, scontrol, scancel) find it through SLURM_CONF. Needs root and
# the packages slurmctld slurmd slurm-client munge (apt-get install --no-install-recommends).
# Exit codes: 0 ok, 1 a daemon did not start (its log is printed), 2 usage.
set -euo pipefail

say() { printf 'slurm-cluster: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# Wait until `check` succeeds (tries × 0.1 s).
wait_until() {
  local tries=$1; shift
  for ((i = 0; i < tries; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

# Two free TCP ports from 6817 up (another cluster on this machine keeps its own).
free_port() {
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || (exec 3<>"/dev/tcp/127.0.0.1/$((p + 1))") 2>/dev/null; do
    p=$((p + 2))
  done
  echo "$p"
}

write_conf() {
  local dir=$1 port=$2 node cpus mem
  node=$(hostname -s)
  cpus=$(nproc)
  # A bit under the free memory, so slurmd's own check passes.
  mem=$(($(awk '/MemAvailable/ {print int($2 / 1024)}' /proc/meminfo) * 9 / 10))
  cat >"$dir/slurm.conf" <<CONF
ClusterName=bilevel-test
SlurmctldHost=$node
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0
EnforcePartLimits=ALL
MinJobAge=3600
KillWait=5
MailProg=/bin/true
ReturnToService=2
NodeName=$node CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=main Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
}

start() {
  local dir=$1
  [[ "$(id -u)" == 0 ]] || die "needs root (the daemons run as root, munged as munge)"
  for cmd in munged slurmctld slurmd sbatch; do
    command -v "$cmd" >/dev/null || [[ -x /usr/sbin/$cmd ]] ||
      die "$cmd is missing: apt-get install --no-install-recommends slurmctld slurmd slurm-client munge"
  done
  mkdir -p "$dir"/{state,spool,log,munge}
  dir=$(cd "$dir" && pwd)
  chmod 755 "$dir" # munged (user munge) reaches its folder through it
  [[ -f "$dir/slurmctld.pid" ]] && stop "$dir"
  local port
  port=$(free_port 6817)
  write_conf "$dir" "$port"
  # munged: its own socket and key copy, so it leaves any system munged alone.
  chown munge: "$dir/munge" && chmod 755 "$dir/munge"
  install -o munge -g munge -m 400 /etc/munge/munge.key "$dir/munge/munge.key"
  runuser -u munge -- /usr/sbin/munged --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed"
  wait_until 50 munge -n -S "$dir/munge/munge.socket" || { cat "$dir/munge/munged.log" >&2; die "munged did not start"; }
  export SLURM_CONF=$dir/slurm.conf
  /usr/sbin/slurmctld -f "$SLURM_CONF"
  wait_until 100 bash -c 'scontrol ping | grep -q UP' || { tail -20 "$dir/log/slurmctld.log" >&2; die "slurmctld did not start"; }
  /usr/sbin/slurmd -f "$SLURM_CONF"
  wait_until 100 bash -c '[[ "$(sinfo -h -o %T)" == idle ]]' || { tail -20 "$dir/log/slurmd.log" >&2; die "slurmd did not start"; }
  echo "export SLURM_CONF=$SLURM_CONF"
}

# SIGTERM, then SIGKILL after 5 s, to the PID in a pid file; a zombie counts as gone.
stop_pid() {
  local file=$1 pid
  [[ -f "$file" ]] || return 0
  pid=$(cat "$file")
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    alive() { [[ -e /proc/$pid ]] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; }
    for ((i = 0; i < 50; i++)); do alive || break; sleep 0.1; done
    alive && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

stop() {
  local dir=$1
  stop_pid "$dir/slurmd.pid"
  stop_pid "$dir/slurmctld.pid"
  stop_pid "$dir/munge/munged.pid"
}

status() {
  SLURM_CONF=$1/slurm.conf scontrol ping 2>/dev/null | grep -q UP
}

[[ $# == 2 ]] || { sed -n '2,12p' "$0" >&2; exit 2; }
case $1 in
  start) start "$2" ;;
  stop) stop "$2" ;;
  status) status "$2" ;;
  *) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
