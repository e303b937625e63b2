#!/usr/bin/env bash
# A throw-away Slurm on this machine for mpitrain's tests: Debian's slurmctld + munge and one
# slurmd per node, configured and started under $MPITRAIN_SLURM_DIR (default
# /tmp/mpitrain-slurm), on ports that do not clash with a site Slurm or another test Slurm.
# Two nodes, n1 and n2, on this one host by default (`slurmd -N n1`, `slurmd -N n2`: the same
# NodeHostname, a port, spool directory, pid file and log each), so multi-node jobs run for
# real: one rank per node, SLURM_NODEID 0 and 1. Needs root and Debian/Ubuntu apt.
#
#   tests/slurm_localhost.sh install   apt-get install the packages (skipped when present)
#   tests/slurm_localhost.sh up        write the config, start munged/slurmctld/slurmd, wait idle
#   tests/slurm_localhost.sh env       print the `export SLURM_CONF=...` clients need
#   tests/slurm_localhost.sh down      cancel our jobs, stop OUR daemons (by pid file + exe check)
#   tests/slurm_localhost.sh purge     down, then remove the directory
#
# Knobs: MPITRAIN_SLURM_DIR, MPITRAIN_SLURM_PORT (slurmctld; node k's slurmd = +k; default
# 17917), MPITRAIN_SLURM_NODES (default 2), MPITRAIN_SLURM_CPUS (CPUs each node advertises;
# default: all of this machine's), MPITRAIN_SLURM_KILLWAIT (seconds from SIGTERM to SIGKILL
# when a job is cancelled or reaches its limit; default 30, a common site value),
# MPITRAIN_SLURM_FIRST_JOB_ID (default 1; distinct ranges keep two test Slurms on one machine
# from reusing job ids, which MPICH puts in its /dev/shm segment names).
#
# Pitfalls handled here (Slurm 22.05 without systemd/cgroups):
# - SlurmctldHost must be `hostname -s`; the address is given explicitly as 127.0.0.1.
# - no cgroups: proctrack/linuxproc and task/none.
# - batch_sched_delay=0, otherwise every batch job waits ~3 s before it starts.
# - munged refuses a socket directory that is not mode 711, and a key that is not 0400.
# - config_overrides lets the node advertise the CPU count we write, not what slurmd probes.
# - several slurmd on one host: per-node paths through %n (SlurmdSpoolDir, SlurmdPidFile,
#   SlurmdLogFile) and a Port per node line.
set -euo pipefail

D=${MPITRAIN_SLURM_DIR:-/tmp/mpitrain-slurm}
PORT=${MPITRAIN_SLURM_PORT:-17917}
NODES=${MPITRAIN_SLURM_NODES:-2}
CONF=$D/etc/slurm.conf
SOCK=$D/munge/munge.sock
export SLURM_CONF=$CONF

say() { echo "slurm_localhost: $*" >&2; }

need_root() {
  [ "$(id -u)" = 0 ] || { say "needs root (to run slurmd as root and to apt-get install)"; exit 3; }
}

installed() {
  local p
  for p in slurmctld slurmd slurm-client munge; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || return 1
  done
}

cmd_install() {
  need_root
  installed && return 0
  command -v apt-get >/dev/null || { say "no apt-get on this machine"; exit 4; }
  say "installing slurmctld slurmd slurm-client munge"
  apt-get update -qq >/dev/null
  # the image's policy-rc.d keeps the packages' own service scripts from starting daemons
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null
}

# pid from a pid file, only if that process is alive and runs the expected program
our_pid() {  # $1 = pid file, $2 = program-name regex
  local pid exe
  [ -s "$1" ] || return 1
  pid=$(cat "$1")
  kill -0 "$pid" 2>/dev/null || return 1
  exe=$(basename "$(readlink "/proc/$pid/exe" 2>/dev/null)")
  [[ $exe =~ $2 ]] || return 1
  echo "$pid"
}

stop() {  # $1 pid file, $2 regex
  local pid i
  pid=$(our_pid "$1" "$2") || { rm -f "$1"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$1"
}

retry() {  # $1 = seconds, rest = command
  local end=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.1
  done
}

nodes() { seq -f 'n%g' 1 "$NODES"; }

write_conf() {
  local host cpus mem k
  mkdir -p "$D"/etc "$D"/state "$D"/spool "$D"/log "$D"/run "$D"/munge
  chmod 711 "$D/munge"
  host=$(hostname -s)
  cpus=${MPITRAIN_SLURM_CPUS:-$(nproc)}
  mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -1)
  cat > "$CONF.new" <<EOF
ClusterName=mpitraintest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool/%n
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd-%n.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd-%n.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
MinJobAge=300
KillWait=${MPITRAIN_SLURM_KILLWAIT:-30}
FirstJobId=${MPITRAIN_SLURM_FIRST_JOB_ID:-1}
InactiveLimit=0
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
EOF
  for k in $(seq "$NODES"); do
    echo "NodeName=n$k NodeHostname=$host NodeAddr=127.0.0.1 Port=$((PORT + k)) CPUs=$cpus" \
      "RealMemory=${mem:-1000} State=UNKNOWN" >> "$CONF.new"
  done
  echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP" >> "$CONF.new"
  if cmp -s "$CONF.new" "$CONF"; then rm -f "$CONF.new"; return 1; fi
  mv "$CONF.new" "$CONF"
  return 0
}

cmd_up() {
  need_root
  installed || { say "Slurm is not installed: run '$0 install' first"; exit 4; }
  if write_conf; then  # the configuration changed: restart the Slurm daemons on it
    stop_slurmds
    stop "$D/run/slurmctld.pid" '^slurmctld'
  fi
  if ! our_pid "$D/munge/munged.pid" '^munged$' >/dev/null; then
    [ -s "$D/munge/munge.key" ] || mungekey -c -k "$D/munge/munge.key" -f
    chmod 400 "$D/munge/munge.key"
    munged -S "$SOCK" --key-file="$D/munge/munge.key" --pid-file="$D/munge/munged.pid" \
      --log-file="$D/munge/munged.log" --seed-file="$D/munge/munged.seed"
    retry 10 sh -c "munge -n -S '$SOCK' | unmunge -S '$SOCK'" || { say "munged did not start"; exit 5; }
  fi
  our_pid "$D/run/slurmctld.pid" '^slurmctld' >/dev/null || slurmctld -f "$CONF"
  for n in $(nodes); do
    mkdir -p "$D/spool/$n"
    our_pid "$D/run/slurmd-$n.pid" '^slurmd' >/dev/null || slurmd -f "$CONF" -N "$n"
  done
  if ! retry 30 sh -c "[ \"\$(sinfo -h -N -o %T | grep -Ecx '(idle|mixed|allocated)')\" = $NODES ]"
  then
    say "the nodes did not come up"; sinfo -N >&2 || true
    tail -n 20 "$D/log/slurmctld.log" "$D"/log/slurmd-*.log >&2
    exit 5
  fi
  say "up: export SLURM_CONF=$CONF"
}

cmd_down() {
  if our_pid "$D/run/slurmctld.pid" '^slurmctld' >/dev/null; then
    local jobs
    jobs=$(squeue -h -o %i 2>/dev/null || true)
    if [ -n "$jobs" ]; then
      scancel $jobs 2>/dev/null || true
      retry 20 sh -c '[ -z "$(squeue -h -o %i)" ]' || say "jobs still listed after scancel"
    fi
  fi
  stop_slurmds
  stop "$D/run/slurmctld.pid" '^slurmctld'
  stop "$D/munge/munged.pid" '^munged$'
}

stop_slurmds() {  # every node's slurmd (also those of an earlier, larger NODES)
  local f
  for f in "$D"/run/slurmd*.pid; do [ -e "$f" ] && stop "$f" '^slurmd'; done
  return 0
}

case "${1:-}" in
  install) cmd_install ;;
  up) cmd_up ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  down) cmd_down ;;
  purge) cmd_down; rm -rf "$D" ;;
  *) echo "usage: $0 install|up|env|down|purge" >&2; exit 2 ;;
esac
